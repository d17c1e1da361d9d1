"""
What the stores keep in memory: the newest entries that fit a byte budget.

The stores (L{emulator.capture.maildir}, L{emulator.capture.transcript})
keep recent messages and sessions for the control API, the console and the
test fixtures.  Counting entries bounded nothing: a thousand 1 MiB messages
are a gigabyte.  L{Kept} bounds them by an estimate of the bytes each holds
instead, forgetting the oldest first.  A store with a folder keeps only a
small summary per entry and reads the rest back from disk when asked; a
store in memory only keeps whole entries, as many as fit.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Iterator, TypeVar

#: The default budget of each store, in bytes (messages and transcripts
#: have one each).  With a Maildir and a transcripts folder a message costs
#: about 250 bytes of it and a session about 390, so the API and the console
#: list the last 17,000 messages and 11,000 sessions or so; in memory only,
#: about 900 sessions of one 1 KiB message (as many as the 1,000 kept
#: before there was a budget), or 40 with 100 KiB messages.  Small, because
#: what is kept stays: a long run's RSS settles at about start-up's plus
#: both budgets (and what the allocator keeps of freed memory).
DEFAULT_BUDGET = 4 * 1024 * 1024

T = TypeVar("T")


class Kept(Generic[T]):
    """The newest entries whose estimated sizes add up to at most C{budget}
    bytes, oldest first (iterable, indexable, with C{len}).  The newest
    entry is kept even when it alone is over budget: it was in memory
    anyway while it arrived, and a test that just sent it expects to see it.

    @ivar budget: the bytes allowed.
    @ivar used: the estimated bytes held now.
    @ivar dropped: entries forgotten to stay within the budget (not those
        forgotten by L{clear}).
    @ivar dropped_bytes: their estimated bytes.
    """

    __slots__ = ("budget", "used", "dropped", "dropped_bytes", "_entries", "_costs")

    def __init__(self, budget: int = DEFAULT_BUDGET):
        if budget < 0:
            raise ValueError(f"a memory budget cannot be negative: {budget}")
        self.budget = budget
        self.used = self.dropped = self.dropped_bytes = 0
        self._entries: deque[T] = deque()
        self._costs: deque[int] = deque()

    def append(self, entry: T, cost: int) -> None:
        """Keep C{entry}, estimated at C{cost} bytes; forget the oldest
        entries while the total is over budget."""
        self._entries.append(entry)
        self._costs.append(cost)
        self.used += cost
        while self.used > self.budget and len(self._entries) > 1:
            self._entries.popleft()
            gone = self._costs.popleft()
            self.used -= gone
            self.dropped += 1
            self.dropped_bytes += gone

    def clear(self) -> None:
        self._entries.clear()
        self._costs.clear()
        self.used = 0

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> T:
        return self._entries[index]

    def __repr__(self) -> str:
        return (f"<Kept {len(self._entries)} entries, {self.used:,} of {self.budget:,} bytes; "
                f"{self.dropped} dropped>")
