"""Named defaults for the worker side of the link; the master may override the timing ones."""

#: Protocol tag carried as the first frame of every message (after the ROUTER's routing id).
PROTOCOL_TAG = b"FBP1"

#: Where a worker dials by default.
MASTER_ENDPOINT = "tcp://127.0.0.1:9989"

#: Seconds between heartbeats when a side has sent nothing else.
HEARTBEAT_INTERVAL = 5.0

#: Heartbeat intervals without any message before the peer counts as lost.
LIVENESS = 3

#: First and largest ceiling, in seconds, of the pause between attempts to reach the master
#: (each pause is drawn from the upper half of its ceiling: see :mod:`flowbot_worker.backoff`).
RECONNECT_MIN = 1.0
RECONNECT_MAX = 5.0

#: Seconds a hello waits for its welcome before the worker tries again.
HELLO_TIMEOUT = 10.0

#: Seconds a message's date may be off the receiver's clock, either way, before it is refused as
#: stale (a captured message replayed later); the clocks of a master and its workers must agree
#: this well.
DATE_WINDOW = 300.0

#: Output is flushed to the master when this many bytes are buffered ...
OUTPUT_FLUSH_BYTES = 64 * 1024
#: ... or when the oldest buffered byte is this old (seconds).
OUTPUT_FLUSH_DELAY = 0.2

#: Bytes of output a command may have in flight without acknowledgement before the worker
#: stops reading the process's pipes (back-pressure all the way to the process).
OUTPUT_WINDOW = 4 * 1024 * 1024

#: Seconds between SIGTERM and SIGKILL when a command is interrupted or times out.
SIGTERM_GRACE = 5.0

#: Seconds between re-sends of a ``finished`` message the master has not acknowledged.
FINISHED_RESEND = 2.0

#: Size limits; anything larger is dropped as malformed.
MAX_HEADER_BYTES = 4 * 1024
MAX_CONTENT_BYTES = 1024 * 1024
MAX_BLOB_BYTES = 8 * 1024 * 1024
#: The largest frame any valid message has; ZeroMQ cuts off a peer that sends a larger one
#: before buffering it.
MAX_FRAME_BYTES = max(MAX_HEADER_BYTES, MAX_CONTENT_BYTES, MAX_BLOB_BYTES)

#: Files move in chunks of this many bytes ...
FILE_CHUNK = 256 * 1024
#: ... with at most this many chunks sent and not yet written (credit-based flow control).
FILE_WINDOW = 8
