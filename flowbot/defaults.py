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
#: Liveness windows of silence after which a worker stops the commands it runs (its fence). The
#: master holds a silent worker's builds for a window, then this, then a window more before it
#: gives them up and runs them elsewhere: a worker back meanwhile goes on with them, and one that
#: is not has stopped its commands by then.
FENCE_WINDOWS = 4

#: Seconds an assignment pass may hold the event loop before it lets other work run (heartbeats,
#: output, requests) and goes on in the loop's next turn.
DISPATCH_SLICE = 0.01
#: Most builds an assignment pass starts before it lets other work run: each build's first turn
#: (its start stored, its first command sent) runs in the loop's next turn, so the slice's time
#: alone would let a pass start hundreds whose first turns then run back to back.
DISPATCH_BATCH = 16
#: Seconds the master may read worker messages that keep arriving (a step printing a flood) before
#: it lets the rest of its work run: a message already waiting is read without a turn of the loop.
RECEIVE_SLICE = 0.01
#: Most workers the master checks (and sends a due heartbeat) in one turn of its loop.
SWEEP_BATCH = 100

#: Most hellos the master holds a challenge out for at once (each for the liveness window); past
#: that the oldest is dropped, so a flood of replayed hellos cannot grow the master's memory.
MAX_CHALLENGES = 1024

#: Seconds a worker waits for its welcome after its first hello before it gives up and dials again,
#: and how long before that the master stops answering: a hello the master reaches only later (its
#: loop was held) is dropped, not welcomed, since the worker that sent it has left that connection.
HELLO_TIMEOUT = _worker.HELLO_TIMEOUT
HELLO_SLACK = 1.0

#: Seconds between the ticks that measure the master's event-loop lag (``flowbot_loop_lag_seconds``).
LOOP_LAG_INTERVAL = 0.1
#: A lag longer than this many seconds is also logged as a warning.
LOOP_LAG_WARNING = 1.0

#: Output flushing that the master asks its workers for (bytes, seconds, bytes in flight).
OUTPUT_FLUSH_BYTES = _worker.OUTPUT_FLUSH_BYTES
OUTPUT_FLUSH_DELAY = _worker.OUTPUT_FLUSH_DELAY
OUTPUT_WINDOW = _worker.OUTPUT_WINDOW

#: Seconds the master gathers acknowledgements of ``finished`` before sending them in one message
#: (well below the worker's re-send interval): off the build's path, one message for many builds.
FINISHED_ACK_DELAY = 0.05

#: Seconds a file transfer under way may go without a chunk or a credit before it fails.
FILE_STALL_TIMEOUT = 60.0

#: A step's log is written to the store in chunks of about this many bytes ...
LOG_CHUNK_BYTES = 64 * 1024
#: ... or after this many seconds, whichever comes first.
LOG_CHUNK_DELAY = 0.5
#: Seconds a chunk of a log waits for a database that cannot take it (down, restarting, its disk
#: full) before its lines are given up (the log then says so, and the build is not a plain success).
LOG_WRITE_PATIENCE = 60.0
#: Bytes of a program's output a step's log keeps (``Pipeline(max_log=...)``, ``Shell(max_log=...)``);
#: past them output is counted, not stored, and the log says how much it lacks.
LOG_MAX_BYTES = 64 * 1024 * 1024
#: A line longer than this many bytes is split, each piece but the last ending in :data:`LOG_LINE_CUT`.
LOG_LINE_BYTES = 64 * 1024
#: What ends a piece of a line that was too long to keep whole: the line goes on in the next one.
LOG_LINE_CUT = " [\u2026 line too long: it goes on in the next line]"

#: Bytes past which SQLite's write-ahead log is emptied at the next checkpoint (TRUNCATE), rather
#: than only copied into the database (PASSIVE), so it stays small however busy the master is.
WAL_TRUNCATE_BYTES = 16 * 1024 * 1024
#: Seconds such a checkpoint waits for readers of older snapshots (while it waits, writes do too);
#: when they hold on longer it is tried again a moment later.
WAL_CHECKPOINT_PATIENCE = 0.05

#: Most writes one transaction takes where it commits in the event loop (SQLite): a burst is
#: committed in several transactions, one per turn of the loop, so none holds the loop long.
STORE_INLINE_BATCH = 200

#: When the database cannot take writes (down, restarting, its disk full), what waits for it is
#: tried again after this many seconds, doubling up to the second figure.
STORE_RETRY_MIN = 0.1
STORE_RETRY_MAX = 2.0
#: Seconds between reminders in the master's log that the database is still unavailable.
STORE_OUTAGE_REMINDER = 60.0
#: Seconds a stopping master waits for an unavailable database to take the writes it holds; the
#: builds they record then run again at the next start.
STORE_STOP_WAIT = 5.0

#: How long one batch of the retention janitor's deletions should hold the database, in seconds;
#: batch sizes adapt to it.
JANITOR_BATCH_SECONDS = 0.02
#: Shortest pause between the janitor's batches, in seconds. The pause is at least as long as the
#: batch took, so the janitor never takes more than half of the store's time (on SQLite the writes
#: run in the master's event loop) and the master's own writes and readers always get their turn.
JANITOR_PAUSE_SECONDS = 0.01
#: Rows the janitor examines in its first batch (log chunks, or build requests), and the most in any.
JANITOR_FIRST_BATCH = 50
JANITOR_MAX_BATCH = 5000
#: The fewest rows a batch examines, however slow the database: a transaction has a fixed cost (the
#: commit, waiting behind the master's writes) that fewer rows would not lower, so batches of one row on
#: a loaded server would only multiply it.
JANITOR_MIN_BATCH = 20

#: Seconds a shell step may go without output, by default (Buildbot's default too).
SHELL_TIMEOUT = 1200.0

#: Seconds between SIGTERM and SIGKILL when a build is stopped.
STOP_GRACE = 5.0

#: Seconds a stopping master waits to deliver its goodbye to connected workers, so they reconnect
#: to its successor at once instead of waiting out the liveness window.
GOODBYE_LINGER = 0.5

#: The database file a master directory gets when no URL is given.
SQLITE_FILE = "state.sqlite"

#: File names inside a master directory.
PIPELINE_FILE = "pipeline.py"
PIPELINE_NOTEBOOK = "pipeline.ipynb"
PID_FILE = "master.pid"
#: Where a master tells ``flowbot reconfig`` whether it applied the pipeline it was sent.
RECONFIG_RESULT_FILE = "reconfig.result"
#: ``flowbot create-key`` writes the master's CURVE key pair as NAME.key and NAME.key_secret.
MASTER_KEY_NAME = "master"

#: Largest request body the HTTP API accepts, in bytes.
MAX_BODY_BYTES = 1024 * 1024

#: Largest webhook delivery the master accepts, in bytes (GitHub sends up to 25 MB).
MAX_HOOK_BODY_BYTES = 25 * 1024 * 1024

#: A body over its endpoint's limit is read and thrown away before the 413 goes out, so that a
#: client that sends all of it before reading hears the answer; one said to be larger than this is
#: answered at once (and loses its connection).
MAX_DISCARDED_BODY_BYTES = 64 * 1024 * 1024

#: Deepest nesting of arrays and objects a JSON request body may have (far deeper ones could not
#: even be stored: Python's JSON encoder recurses).
MAX_JSON_DEPTH = 64

#: How many delivery ids a webhook remembers, to make no change twice when one is sent again.
WEBHOOK_DELIVERIES_KEPT = 1000

#: How many open pull requests a webhook remembers the last change of, to build it again when a
#: person asks (a ``/retest`` comment); the least recently changed are forgotten first.
WEBHOOK_PULL_REQUESTS_KEPT = 500

#: Most builds one API list returns.
MAX_LIST = 1000

#: Pending requests a builder's listing names (the next in line); the whole queue is paged at
#: ``/api/buildrequests``, so a listing stays small however deep the queue.
BUILDER_PENDING_SHOWN = 10

#: Seconds between two polls of a repository by a ``GitPoller``.
GIT_POLL_INTERVAL = 60.0

#: Durable events (all but live log lines) the master remembers for event-stream clients that
#: reconnect with ``since=``; finished builds older than that come from the store.
EVENT_JOURNAL_SIZE = 10_000

#: Seconds before a resume point from which the store's finished builds are replayed: a build's
#: event is sent a moment after its end is recorded, so a little overlap is needed to miss none.
EVENT_RESUME_SLACK = 10.0

#: Events a reader of the master's events may fall behind by (an event-stream client, while its
#: replay is sent; :meth:`Master.events` in the kernel) before it is disconnected as too slow.
EVENT_CLIENT_BACKLOG = 5_000
#: Bytes of events an event-stream client may have unsent before it is disconnected as too slow.
EVENT_CLIENT_BACKLOG_BYTES = 16 * 1024 * 1024
#: Seconds between two writes of events to the event-stream clients: what comes meanwhile goes to
#: each client in one write, so a busy master writes each client a few dozen times a second however
#: many events it has (an idle one writes at once).
EVENT_FLUSH_DELAY = 0.025

#: Seconds between WebSocket pings (keeps idle streams alive through proxies).
WEBSOCKET_PING = 20.0

#: How long a login on the web page lasts, in hours.
SESSION_HOURS = 12

#: Wrong passwords a client may send for one user name (or wrong API tokens) within the window
#: below; after that it is refused (429) until the oldest failure leaves the window.
PASSWORD_FAILURES = 5
PASSWORD_FAILURE_WINDOW = 60.0

#: Wrong passwords for one user (or wrong API tokens) from all addresses together within the
#: window below; after that, addresses the account was not used from lately are refused (429)
#: until the oldest failure leaves the window, so rotating addresses does not help a guesser.
ACCOUNT_FAILURES = 20
ACCOUNT_FAILURE_WINDOW = 600.0

#: How long an address that used an account successfully is let through while the account is
#: held off for others, in seconds.
KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600.0

#: Builds per builder on the web page's overview.
OVERVIEW_BUILDS = 12

#: Log lines the web page shows of a step at first (it fetches more on request).
LOG_TAIL_LINES = 500

#: Stored log chunks (about 64 KiB each) read and sent at a time when a whole log is asked for.
LOG_PAGE_CHUNKS = 16

#: Reporters: attempts per report, the first retry delay (doubling each time) and its cap, in seconds.
REPORT_ATTEMPTS = 6
REPORT_BACKOFF = 1.0
REPORT_BACKOFF_MAX = 60.0

#: Reports waiting per reporter before the oldest are dropped (a dead endpoint must not grow memory).
REPORT_QUEUE = 1_000

#: Seconds a stopping master gives reporters to deliver what is queued.
REPORT_DRAIN = 5.0

#: Lines of the log tail that mail reports include, and the fewer that chat messages show.
REPORT_LOG_LINES = 40
CHAT_LOG_LINES = 15
#: Artifacts a chat message links to (the build's page lists them all).
CHAT_ARTIFACTS = 10

#: Workers started on demand: seconds an instance has to start and connect, and seconds a connected
#: one may go without a build before it is removed (0: one build per instance; negative: never).
INSTANCE_START_TIMEOUT = 300.0
INSTANCE_IDLE_TIMEOUT = 0.0
#: Seconds within which an instance must use the credential of its start (a credential that worked
#: is good for that worker process alone, for as long as its instance lives).
INSTANCE_CREDENTIAL_TTL = 300.0
#: The file in the master's directory holding the key instances' credentials are derived from.
INSTANCE_KEY_FILE = "instances.key"
#: Seconds an instance that connected may wait for its first build when its worker's idle_timeout
#: is 0 (the request it was started for may have gone meanwhile).
INSTANCE_UNUSED_TIMEOUT = 5.0
#: Seconds a launcher may take to stop and remove an instance, or to list the instances there are.
INSTANCE_STOP_TIMEOUT = 60.0
#: Seconds between checks that a starting instance still runs (one that exits fails at once).
INSTANCE_POLL = 1.0
#: After a failed start, no new instance of that worker for this many seconds, doubling with each
#: failure in a row up to the second figure.
INSTANCE_BACKOFF = 2.0
INSTANCE_BACKOFF_MAX = 300.0
#: Seconds between sweeps that remove instances labelled with this master that it no longer owns
#: (a stop that failed, a create that went through after it was cancelled).
INSTANCE_SWEEP = 60.0

#: Most failing tests a finished build's report carries (to reporters that ask for them).
REPORT_FAILED_TESTS = 1000

#: Annotations GitHub takes in one check run request; more go in further requests.
GITHUB_ANNOTATIONS_PER_REQUEST = 50

#: Seconds a GitHub App's JSON Web Token is valid (GitHub allows ten minutes at most).
GITHUB_APP_JWT_LIFETIME = 540

#: Seconds before an installation token expires when a new one is asked for.
GITHUB_TOKEN_MARGIN = 300

#: IRC: the port of plain connections (6697 is the usual one for TLS).
IRC_PORT = 6667
#: Seconds an IRC connection has to open and register; and, after it drops, the first wait before
#: dialling again (doubling each time up to the second figure).
IRC_CONNECT_TIMEOUT = 30.0
IRC_RECONNECT = 1.0
IRC_RECONNECT_MAX = 300.0
#: Seconds of silence from the IRC server before the bot sends a PING; as long again with no answer
#: and the connection is taken for dead.
IRC_QUIET = 120.0
#: Lines the bot sends at once, then one per this many seconds (servers cut off a client that floods).
IRC_BURST = 5
IRC_LINE_INTERVAL = 1.0
#: Builders the ``status`` command lists before it says how many more there are.
IRC_STATUS_LINES = 10

#: Single sign-on: seconds a login may take at the OpenID issuer, and seconds per request to it.
OIDC_LOGIN_SECONDS = 600
OIDC_TIMEOUT = 30.0
