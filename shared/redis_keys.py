"""Every Redis key routeyard uses, in one place. The Lua scripts in `shared/lua/` build the same names
from the same prefix; `tests/test_queue.py` checks that the two agree.

Dispatch (priority `p` in 0..2, lower first):
    {prefix}q:{p}:tenants                 ZSET tenant → virtual time (service received)
    {prefix}q:{p}:t:{tenant}:lanes        ZSET lane (batch) → virtual time
    {prefix}q:{p}:t:{tenant}:l:{lane}     ZSET job id (score 0: ids are time-ordered, so order is FIFO)
    {prefix}q:{p}:sched                   ZSET job id → ms: lease expiry (running) or due time (deferred)
    {prefix}q:{p}:depth                   STRING count of jobs waiting in lanes
Workers:
    {prefix}w:{worker_id}                 STRING heartbeat with a TTL (liveness, `routeyard status`)
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY_LEVELS = 3


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "ry:"

    def tenants(self, p: int) -> str:
        return f"{self.prefix}q:{p}:tenants"

    def lanes(self, p: int, tenant: str) -> str:
        return f"{self.prefix}q:{p}:t:{tenant}:lanes"

    def lane(self, p: int, tenant: str, lane: str) -> str:
        return f"{self.prefix}q:{p}:t:{tenant}:l:{lane}"

    def sched(self, p: int) -> str:
        return f"{self.prefix}q:{p}:sched"

    def depth(self, p: int) -> str:
        return f"{self.prefix}q:{p}:depth"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}w:{worker_id}"

    def workers_pattern(self) -> str:
        return f"{self.prefix}w:*"
