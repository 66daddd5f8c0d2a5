"""jobspec/choices.py copies value lists from transformers (the spec may not import it): they must
stay equal to the installed library's."""

from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

from jobspec.choices import LR_SCHEDULERS, OPTIMIZERS, REPORT_INTEGRATIONS


def test_optimizers_are_transformers_optimizer_names():
    assert sorted(OPTIMIZERS) == sorted(name.value for name in OptimizerNames)


def test_lr_schedulers_are_transformers_scheduler_types():
    assert sorted(LR_SCHEDULERS) == sorted(kind.value for kind in SchedulerType)


def test_report_integrations_are_transformers_integrations():
    assert sorted(REPORT_INTEGRATIONS) == sorted(INTEGRATION_TO_CALLBACK)
