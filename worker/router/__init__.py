"""The router: a pure function from a job to an ordered plan of endpoints, with the reason every other
endpoint was left out.

    plan(job, catalog, policy, live_state, seed) -> Plan(candidates, excluded)

No I/O and no clock: everything it knows arrives as arguments, so the same inputs and seed always give the
same plan, `routeyard route --explain` shows exactly what the worker will do, and property tests can check
it. Semantics follow OpenRouter's provider routing (`model` then `models` as an ordered fallback list;
`provider.order`, `only`, `ignore`, `sort` (string or `{by, partition}`), `max_price`, `data_collection`,
`zdr`, `quantizations`, `require_parameters`, `allow_fallbacks`, `preferred_min_throughput`,
`preferred_max_latency`), with the organisation's policy as the outer bound: a job can narrow it, never
widen it. Deliberate differences are listed in the README's routing section.

Default strategy within a model: endpoints drawn at random, weighted by the inverse square of their price
for this job (OpenRouter's documented default), so the cheapest gets most traffic without starving the rest.
`sort` or `order` replace the draw with a fixed order (price, latency or throughput; latency and throughput
from live statistics). `Candidate.first_odds` is each endpoint's chance of being tried first under the draw,
which is what `routeyard estimate` prices.

The package, one job a module: `types` (plans, candidates, exclusions, live state), `policy` (organisation
policy merged with a job's preferences), `filters` (why an endpoint is excluded), `ordering` (in what order the
rest are tried), `context` (what one planning call shares), `planner` (`plan()` itself).
"""

from worker.router.context import job_seed
from worker.router.ordering import PRICE_FLOOR, inverse_square_weights, weighted_order
from worker.router.planner import plan
from worker.router.policy import MergedPolicy, matches, merge_policy
from worker.router.types import Candidate, EndpointStats, Exclusion, LiveState, Plan, Why

__all__ = [
    "PRICE_FLOOR",
    "Candidate",
    "EndpointStats",
    "Exclusion",
    "LiveState",
    "MergedPolicy",
    "Plan",
    "Why",
    "inverse_square_weights",
    "job_seed",
    "matches",
    "merge_policy",
    "plan",
    "weighted_order",
]
