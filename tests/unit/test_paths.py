"""Confinement of user-given names: base_model stays a hub id or a folder inside a model root
(symlinks resolved), output_dir stays a plain relative name under the tenant's own folder."""

from pathlib import Path

import pytest

from traindock.paths import PathRefused, check_output_name, is_hub_id, job_output_dir, resolve_base_model


@pytest.fixture
def roots(tmp_path) -> dict[str, Path]:
    """Two model roots with a model each, a secret folder outside them, and symlinks."""
    root = (tmp_path / "models").resolve()
    other_root = (tmp_path / "more-models").resolve()
    outside = (tmp_path / "outside").resolve()
    for folder in (root / "llama", root / "org" / "mistral", other_root / "gemma", outside / "secret"):
        folder.mkdir(parents=True)
    (root / "notes.txt").write_text("not a folder")
    (root / "escape").symlink_to(outside / "secret")               # inside -> outside
    (root / "org" / "escape").symlink_to(outside)                   # nested inside -> outside
    (root / "alias").symlink_to(root / "llama")                     # inside -> inside
    (root / "cross").symlink_to(other_root / "gemma")               # root -> other root
    (root / "dangling").symlink_to(outside / "not-there")           # inside -> missing outside
    (root / "loop").symlink_to(root / "loop")                       # loop
    return {"root": root, "other": other_root, "outside": outside, "list": [root, other_root]}


def refused(name: str, model_roots: list[Path]) -> str:
    with pytest.raises(PathRefused) as caught:
        resolve_base_model(name, model_roots)
    return str(caught.value)


@pytest.mark.parametrize("name", [
    "..", "../", "../outside", "../../etc/passwd", "llama/..", "llama/../..", "llama/../../outside",
    "org/../..", "org/../../outside/secret", "./../outside", "llama/./../../x", "a/b/../../../c",
])
def test_dot_dot_in_any_position_is_refused(roots, name):
    assert ".." in refused(name, roots["list"])


@pytest.mark.parametrize("name", ["/etc", "/etc/passwd", "/", "/tmp", "/proc/self/root"])
def test_absolute_paths_outside_the_roots_are_refused(roots, name):
    assert "model roots" in refused(name, roots["list"])


def test_absolute_path_outside_next_to_a_root_is_refused(roots):
    assert "model roots" in refused(str(roots["outside"] / "secret"), roots["list"])
    # a sibling whose name merely starts with the root's name is not inside it
    sibling = Path(str(roots["root"]) + "-evil")
    sibling.mkdir()
    assert "model roots" in refused(str(sibling), roots["list"])


def test_absolute_paths_inside_a_root_are_allowed(roots):
    assert resolve_base_model(str(roots["root"] / "llama"), roots["list"]) == roots["root"] / "llama"
    assert resolve_base_model(str(roots["other"] / "gemma"), roots["list"]) == roots["other"] / "gemma"


def test_absolute_path_inside_a_root_that_climbs_out_is_refused(roots):
    assert "model roots" in refused(str(roots["root"] / "llama" / ".." / ".." / "outside"), roots["list"])


def test_absolute_path_inside_a_root_that_is_no_folder_is_refused(roots):
    assert "no folder" in refused(str(roots["root"] / "notes.txt"), roots["list"])
    assert "no folder" in refused(str(roots["root"] / "missing"), roots["list"])


@pytest.mark.parametrize("name", ["escape", "org/escape", "org/escape/secret", "dangling"])
def test_symlink_inside_a_root_pointing_outside_is_refused(roots, name):
    assert "symlink" in refused(name, roots["list"])


def test_symlink_given_as_absolute_path_pointing_outside_is_refused(roots):
    assert "model roots" in refused(str(roots["root"] / "escape"), roots["list"])
    assert "model roots" in refused(str(roots["root"] / "org" / "escape" / "secret"), roots["list"])


def test_symlink_to_another_folder_inside_the_roots_is_allowed(roots):
    assert resolve_base_model("alias", roots["list"]) == roots["root"] / "llama"
    assert resolve_base_model("cross", roots["list"]) == roots["other"] / "gemma"


def test_symlink_loop_is_refused_not_crashed(roots):
    assert "loop" in refused("loop", roots["list"])
    refused(str(roots["root"] / "loop"), roots["list"])


def test_hub_id_that_names_a_folder_in_the_working_directory_is_refused(roots, tmp_path, monkeypatch):
    """transformers would load such a 'hub id' from the folder, outside the model roots."""
    cwd = tmp_path / "cwd"
    (cwd / "org" / "secret-model").mkdir(parents=True)
    (cwd / "plain").mkdir()
    monkeypatch.chdir(cwd)
    assert "working directory" in refused("org/secret-model", roots["list"])
    assert "working directory" in refused("plain", roots["list"])
    assert resolve_base_model("org/other-model", roots["list"]) is None


def test_folders_inside_the_roots_resolve_and_hub_ids_pass_through(roots):
    assert resolve_base_model("llama", roots["list"]) == roots["root"] / "llama"
    assert resolve_base_model("org/mistral", roots["list"]) == roots["root"] / "org" / "mistral"
    assert resolve_base_model("gemma", roots["list"]) == roots["other"] / "gemma"
    assert resolve_base_model("meta-llama/Llama-3.2-1B", roots["list"]) is None


@pytest.mark.parametrize("name", [
    "%2e%2e/%2e%2e/etc", "%2e%2e%2f%2e%2e%2fetc", "..%2f..%2fetc", "%2E%2E/etc/passwd",
    "..\\..\\etc", "llama\\..\\..\\outside", "\\etc\\passwd", "C:\\Windows", "org/name/extra",
    "org//name", "-rf", ".hidden", "~/models", "$HOME/x", "org/na me", "org/name\n",
])
def test_encoded_dots_backslashes_and_odd_names_are_neither_paths_nor_hub_ids(roots, name):
    refused(name, roots["list"])
    assert not is_hub_id(name)


def test_url_encoded_dots_are_not_decoded_into_a_real_folder(roots, tmp_path):
    # A folder literally named '%2e%2e' inside the root is just a folder with an odd name.
    (roots["root"] / "%2e%2e").mkdir()
    assert resolve_base_model("%2e%2e", roots["list"]) == roots["root"] / "%2e%2e"


@pytest.mark.parametrize("name", ["\x00", "llama\x00", "\x00/etc/passwd", "org/\x00name", "/etc\x00"])
def test_nul_bytes_are_refused(roots, name):
    assert "NUL" in refused(name, roots["list"])


@pytest.mark.parametrize("name", [
    "a" * 300, "org/" + "b" * 300, "x/" * 2500, "a" * 5000, "/" + "a" * 300, str(Path("/tmp") / ("c" * 300)),
])
def test_very_long_names_are_refused_not_crashed(roots, name):
    refused(name, roots["list"])


def test_long_name_inside_a_root_is_refused_as_unusable(roots):
    message = refused("m" * 300, roots["list"])
    assert "usable" in message


# output_dir ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc", "/tmp/out", "//server/share", "\\\\server\\share", "\\out"])
def test_output_dir_absolute_is_refused(name):
    with pytest.raises(PathRefused, match="relative|backslash"):
        check_output_name(name)


@pytest.mark.parametrize("name", ["..", "../x", "a/..", "a/../../b", "a/b/../../..", "./..", "x/../y"])
def test_output_dir_dot_dot_in_any_position_is_refused(name):
    with pytest.raises(PathRefused, match=r"\.\."):
        check_output_name(name)


@pytest.mark.parametrize("name", ["a\\b", "..\\x", "a\\..\\..\\b"])
def test_output_dir_backslashes_are_refused(name):
    with pytest.raises(PathRefused, match="backslash"):
        check_output_name(name)


@pytest.mark.parametrize("name", ["\x00", "a\x00", "a/\x00/b"])
def test_output_dir_nul_is_refused(name):
    with pytest.raises(PathRefused, match="NUL"):
        check_output_name(name)


@pytest.mark.parametrize("name", ["", ".", " ", "./"])
def test_output_dir_must_name_a_folder(name):
    with pytest.raises(PathRefused):
        check_output_name(name)


@pytest.mark.parametrize("name", ["./mine", "mine/", "mine/.", "a//b", "a/./b"])
def test_output_dir_must_be_written_one_way(name):
    """Spellings of the same folder would defeat the one-job-per-folder check."""
    with pytest.raises(PathRefused, match="plain"):
        check_output_name(name)


@pytest.mark.parametrize("name", ["mine", "support-bot-v1", "runs/v2", "a.b_c-d", "%2e%2e"])
def test_output_dir_plain_relative_names_are_accepted(name):
    check_output_name(name)


def test_job_output_dir_is_per_tenant_and_stays_inside(tmp_path):
    jobs = tmp_path / "jobs"
    a, b = job_output_dir(jobs, 1, "shared", 5), job_output_dir(jobs, 2, "shared", 6)
    assert a == jobs / "tenant-1" / "shared"
    assert b == jobs / "tenant-2" / "shared"
    assert a != b
    assert job_output_dir(jobs, 3, None, 7) == jobs / "tenant-3" / "job-7"
    for bad in ("../tenant-2/shared", "/etc", "a/../../tenant-2"):
        with pytest.raises(PathRefused):
            job_output_dir(jobs, 1, bad, 8)
