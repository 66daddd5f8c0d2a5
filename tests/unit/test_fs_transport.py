"""The embedded broker's message files: a worker polling the queue folder while the API writes
never takes a message that is not whole (kombu's own filesystem transport does: celery/kombu#1551)."""

import threading
from queue import Empty

from kombu import Connection

from traindock.fs_transport import Transport

MESSAGES = 300
BODY = "x" * 100_000  # a large message keeps the write window open long enough to be seen


def test_a_polling_reader_gets_every_message_whole(tmp_path):
    folder = str(tmp_path)
    options = {"data_folder_in": folder, "data_folder_out": folder}
    with Connection("filesystem://", transport=Transport, transport_options=options) as writer_conn, \
            Connection("filesystem://", transport=Transport, transport_options=options) as reader_conn:
        writer, reader = writer_conn.default_channel, reader_conn.default_channel

        def write():
            for index in range(MESSAGES):
                writer._put("gpu", {"index": index, "body": BODY})

        thread = threading.Thread(target=write)
        thread.start()
        received = []
        while len(received) < MESSAGES:
            try:
                received.append(reader._get("gpu"))  # an empty file would raise JSONDecodeError here
            except Empty:
                if not thread.is_alive() and reader._size("gpu") == 0:
                    break
        thread.join()
    assert sorted(message["index"] for message in received) == list(range(MESSAGES))
    assert all(message["body"] == BODY for message in received)


def test_the_embedded_broker_is_this_transport(tmp_path):
    from traindock.broker import make_celery
    from traindock.settings import Settings

    app = make_celery(Settings(data_dir=tmp_path, broker_url=None))
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
