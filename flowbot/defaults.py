"""Named defaults for the master; each can be changed where it is used (CLI flag or argument)."""

from flowbot_worker import defaults as _worker

#: Where the master's HTTP server (REST API, event stream) listens.
HTTP_HOST = "127.0.0.1"
HTTP_PORT = 8010

#: Where workers dial in (the master's ROUTER socket).
WORKER_ENDPOINT = _worker.MASTER_ENDPOINT

#: The URL the CLI talks to.
MASTER_URL = f"http://{HTTP_HOST}:{HTTP_PORT}"

#: Seconds between heartbeats on an idle link, and missed intervals before a worker is lost.
HEARTBEAT_INTERVAL = _worker.HEARTBEAT_INTERVAL
LIVENESS = _worker.LIVENESS

#: Output flushing that the master asks its workers for (bytes, seconds, bytes in flight).
OUTPUT_FLUSH_BYTES = _worker.OUTPUT_FLUSH_BYTES
OUTPUT_FLUSH_DELAY = _worker.OUTPUT_FLUSH_DELAY
OUTPUT_WINDOW = _worker.OUTPUT_WINDOW

#: A step's log is written to the store in chunks of about this many bytes ...
LOG_CHUNK_BYTES = 64 * 1024
#: ... or after this many seconds, whichever comes first.
LOG_CHUNK_DELAY = 0.5

#: Seconds a shell step may go without output, by default (Buildbot's default too).
SHELL_TIMEOUT = 1200.0

#: Seconds between SIGTERM and SIGKILL when a build is stopped.
STOP_GRACE = 5.0

#: The database file a master directory gets when no URL is given.
SQLITE_FILE = "state.sqlite"

#: File names inside a master directory.
PIPELINE_FILE = "pipeline.py"
PIPELINE_NOTEBOOK = "pipeline.ipynb"
PID_FILE = "master.pid"

#: Largest request body the HTTP API accepts, in bytes.
MAX_BODY_BYTES = 1024 * 1024

#: Most builds one API list returns.
MAX_LIST = 1000

#: Seconds between two polls of a repository by a ``GitPoller``.
GIT_POLL_INTERVAL = 60.0
