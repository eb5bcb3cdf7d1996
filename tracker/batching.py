"""Whether Prodigy may be holding tasks we yielded for a batch it has not sent. Pure; no I/O.

Prodigy fills a batch by calling `next()` on our generator in a loop, from the request
thread that asked (filtered tasks do not count, so it may pull more than a batch). While it
fills, the tasks it already took reach nobody: if the generator blocks now (waiting for a
lease to expire), they wait with it, and their leases run out. So when nothing is claimable
the stream needs to know: is this resume the next pull of a fill loop (end soon, so that
the partial batch goes out), or a new request (safe to wait)?

Nothing tells us directly; the time since the last task was handed over does:

- within `FILL_LOOP_GAP` (a couple of milliseconds): the fill loop, whatever happened
  meanwhile. No new request makes a browser round trip that fast; an answer recorded in
  that window came from another session, answering while this batch is filled.
- within `batch_gap` with no answer recorded since: probably the fill loop still (Prodigy's
  own filtering between pulls, a busy interpreter), or a request that queued behind it.
- later, or with an answer in between: a new request.

Every doubt is "mid-batch": the cost of that mistake is ending a stream early (its keys
come back through their leases), the cost of the other is a batch held hostage until its
leases run out. Thread identity would not help: a server's pool reuses request threads, and
an answer and the next request of one browser may run on different ones.
"""

from __future__ import annotations

#: Seconds under which a resume is Prodigy's fill loop even if an answer came in between.
FILL_LOOP_GAP = 0.002


def mid_batch(handed: float, resumed: float, answered: float | None, batch_gap: float) -> bool:
    """True when a resume at `resumed` (time.monotonic()), after the last task was handed
    over at `handed`, may be Prodigy's fill loop; `answered` is when answers were last
    recorded (None if never)."""
    gap = resumed - handed
    if gap < FILL_LOOP_GAP:
        return True
    answer_since = answered is not None and handed <= answered <= resumed
    return gap < batch_gap and not answer_since
