"""`Farm`: the ASGI app that pretends to be many LLM providers at once.

Paths are `/{provider}/...` in the provider's wire format, plus `/_farm/...` for control (`control.py`).
A generation request goes through the same steps whatever its format, each able to end it:

    down (503/529) -> auth (401) -> JSON and fields (400) -> model (404) -> context window (400)
    -> rate limits (429, charged only when admitted) -> injected fault (429 / 500 / 503 / hang)
    -> latency -> 200

Everything in that chain is deterministic given the farm seed, the clock and the requests' attempt ids,
so tests can assert exact outcomes. The path stays lean for benchmarks: no pydantic per request, no sleep
at zero latency, per-provider lookups precomputed in `ProviderState`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from worker.farm._asgi import (
    RawHeaders,
    Receive,
    Scope,
    Send,
    lifespan,
    read_body,
    send_json,
    wait_disconnect,
)
from worker.farm.behaviour import FarmConfig, ProviderBehaviour, default_farm_config
from worker.farm.control import handle_control
from worker.farm.faults import Draw, Fault, draw, latency_s
from worker.farm.record import FarmRecord, Outcome, RequestRecord, key_hash
from worker.farm.state import ProviderState
from worker.farm.tokens import DEFAULT_MAX_OUTPUT, count_prompt_tokens, reply_for
from worker.farm.wires.base import FarmError, Route, retry_headers

Clock = Callable[[], float]

_JOB_HEADER = b"x-routeyard-job-id"
_ATTEMPT_HEADER = b"x-routeyard-attempt-id"


class _Call:
    """What the farm knows about one request so far: enough to answer and record it at any step."""

    __slots__ = ("attempt_id", "job_id", "key", "limit_headers", "model", "provider", "received", "serial")

    def __init__(self, provider: ProviderState, received: float, serial: str, headers: dict[bytes, bytes]):
        self.provider = provider
        self.received = received
        self.serial = serial
        job, attempt = headers.get(_JOB_HEADER), headers.get(_ATTEMPT_HEADER)
        self.job_id = job.decode("latin-1") if job else None
        self.attempt_id = attempt.decode("latin-1") if attempt else None
        self.model: str | None = None
        self.key: str | None = None
        self.limit_headers: RawHeaders | None = None  # set once the limiter has charged (or refused) it

    def headers(self) -> RawHeaders:
        wire = self.provider.wire
        headers = [(wire.request_id_header, b"req_" + self.serial.encode())]
        if self.limit_headers:
            headers += self.limit_headers
        return headers


class Farm:
    """The simulated provider farm, an ASGI app: `Farm(config)` then serve it or wrap it in a transport.

    `clock` (seconds, default `time.time`) drives rate-limit windows, timestamps and the record, so tests
    inject a fake one and advance it instead of sleeping. Latency and hangs use real `asyncio.sleep`.
    """

    def __init__(self, config: FarmConfig | None = None, *, clock: Clock = time.time) -> None:
        config = config if config is not None else default_farm_config()
        self.seed = config.seed
        self.record = FarmRecord(record_requests=config.record_requests)
        self._clock = clock
        self._providers = {name: ProviderState(name, b) for name, b in config.providers.items()}
        self._serial = 0
        self._serial_prefix = secrets.token_hex(4)

    # -- control, in process -------------------------------------------------------------------------

    @property
    def behaviours(self) -> dict[str, ProviderBehaviour]:
        """The current behaviour of every provider (including runtime changes)."""
        return {name: state.behaviour for name, state in self._providers.items()}

    def set_behaviour(self, name: str, **changes: Any) -> ProviderBehaviour:
        """Merge `changes` into provider `name`'s behaviour (validated); KeyError for an unknown name."""
        state = self._providers[name]
        state.apply(state.behaviour.patched(changes))
        return state.behaviour

    def reset(self) -> None:
        """Forget every request: the record, rate-limit windows and fault counters start over."""
        self.record.reset()
        for state in self._providers.values():
            state.reset()

    # -- ASGI ----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await lifespan(receive, send)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        path: str = scope["path"]
        method: str = scope["method"]
        slash = path.find("/", 1)
        name, rest = (path[1:slash], path[slash:]) if slash > 0 else (path[1:], "")
        state = self._providers.get(name)
        if state is not None:
            route = state.wire.route(method, rest)
            if route is None:
                await self._unrouted(state, scope, receive, send)
            elif route.endpoint == "generate":
                await self._generate(state, route, scope, receive, send)
            else:
                await self._list_models(state, scope, send)
        elif name == "_farm":
            body = await read_body(receive)
            status, answer = handle_control(self, method, rest, scope.get("query_string", b""), body or b"")
            await send_json(send, status, answer)
        else:
            await read_body(receive)
            message = f"No provider or endpoint at {method} {path}"
            await send_json(send, 404, {"error": {"message": message, "type": "not_found", "code": None}})

    # -- generation ----------------------------------------------------------------------------------

    async def _generate(self, state: ProviderState, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        call = _Call(state, self._clock(), self._next_serial(), headers)
        raw = await read_body(receive)
        if raw is None:
            return  # the client left before sending its request: nothing asked, nothing to record
        wire, behaviour = state.wire, state.behaviour
        body, bad_json = _decode(raw)
        model = body.get("model")
        call.model = route.model or (model if isinstance(model, str) else None)
        try:
            if behaviour.down:
                raise FarmError("overloaded", f"{state.name} is down (simulated outage).")
            call.key = self._authenticate(state, headers, scope.get("query_string", b""))
            if bad_json is not None:
                raise bad_json
            parsed = wire.parse(body, route, headers)
            call.model = parsed.model
            if state.models is not None and parsed.model not in state.models:
                raise FarmError("model_not_found", f"The model `{parsed.model}` does not exist.", param="model")
            prompt_tokens = count_prompt_tokens(parsed.texts, parsed.n_messages)
            cap = _output_cap(behaviour, parsed.model, prompt_tokens, parsed.max_tokens)
            if state.limited:
                self._admit(state, call, prompt_tokens + cap)
            dice = self._roll(state, call)
            fault = state.faults.pick(dice.u_fault) if dice is not None else None
            if fault == "hang":
                await self._hang(call, receive, send)
                return
            if fault is not None:
                await self._inject(fault, state, dice)
            reply = reply_for(parsed.model, "\x00".join(parsed.texts), cap)
            if state.sleeps:
                await asyncio.sleep(latency_s(behaviour, dice.u_jitter if dice else 0.5, reply.tokens))
            answer = wire.success(parsed, reply, prompt_tokens, call.serial, int(call.received))
            await send_json(send, 200, answer, call.headers())
            self._record(call, 200, "served", prompt_tokens, reply.tokens)
        except FarmError as err:
            await self._fail(call, err, send)

    def _authenticate(self, state: ProviderState, headers: dict[bytes, bytes], query: bytes) -> str:
        key = state.wire.api_key(headers, query)
        if key is None:
            raise FarmError("auth", "No API key provided.")
        if state.keys is not None and key not in state.keys:
            raise FarmError("auth", "Incorrect API key provided.")
        return key

    def _admit(self, state: ProviderState, call: _Call, tokens: int) -> None:
        behaviour, now = state.behaviour, self._clock()
        verdict = state.limiter.check(call.key, behaviour.rpm, behaviour.tpm, tokens, now)
        call.limit_headers = state.wire.limit_headers(verdict, now)
        if not verdict.admitted:
            by_requests = verdict.refused_by == "requests"
            limit = behaviour.rpm if by_requests else behaviour.tpm
            unit = "requests per min (RPM)" if by_requests else "tokens per min (TPM)"
            raise FarmError(
                "rate_limit",
                f"Rate limit reached for {unit}: Limit {limit}, Used {verdict.used}, Requested "
                f"{verdict.requested}. Please try again in {verdict.retry_after_s:.3f}s.",
                limit_type=verdict.refused_by,
                retry_after_s=verdict.retry_after_s,
            )

    def _roll(self, state: ProviderState, call: _Call) -> Draw | None:
        """This request's dice, keyed by its attempt id or else the provider's counter (None if unused)."""
        n = state.counter
        if call.attempt_id is None:
            state.counter += 1
        if not state.faults.thresholds and not state.behaviour.jitter_ms:
            return None
        discriminator = f"n:{n}" if call.attempt_id is None else "a:" + call.attempt_id
        return draw(self.seed, state.name, discriminator)

    @staticmethod
    async def _inject(fault: Fault, state: ProviderState, dice: Draw | None) -> None:
        """Raise the injected error; server errors come after the base latency, as real ones do."""
        behaviour = state.behaviour
        if fault == "429":
            raise FarmError("rate_limit", "Rate limit reached (simulated).", retry_after_s=behaviour.retry_after_s)
        if state.sleeps:
            await asyncio.sleep(latency_s(behaviour, dice.u_jitter if dice else 0.5, 0))
        if fault == "500":
            raise FarmError("server", "The server had an error while processing your request (simulated).")
        raise FarmError("overloaded", f"{state.name} is overloaded (simulated).")

    async def _hang(self, call: _Call, receive: Receive, send: Send) -> None:
        """Hold the request for `hang_s` or until the client gives up; it is recorded as hung up front."""
        self._record(call, None, "hung")
        try:
            await asyncio.wait_for(wait_disconnect(receive), call.provider.behaviour.hang_s)
        except TimeoutError:
            # The client outlasted the hang: answer a gateway timeout, without recording it a second time.
            await self._fail(call, FarmError("timeout", "The request timed out (simulated hang)."), send, False)

    async def _fail(self, call: _Call, err: FarmError, send: Send, record: bool = True) -> None:
        state = call.provider
        if call.limit_headers is None and call.key is not None and state.limited:
            # Refused before the limiter: show the budget as it stands, uncharged.
            now = self._clock()
            verdict = state.limiter.peek(call.key, state.behaviour.rpm, state.behaviour.tpm, now)
            call.limit_headers = state.wire.limit_headers(verdict, now)
        status, answer = state.wire.error(err)
        headers = call.headers()
        if err.retry_after_s is not None:
            headers += retry_headers(err.retry_after_s)
        await send_json(send, status, answer, headers)
        if record:
            self._record(call, status, "error")

    def _record(
        self,
        call: _Call,
        status: int | None,
        outcome: Outcome,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        self.record.add(
            RequestRecord(
                provider=call.provider.name,
                wire=call.provider.wire.name,
                model=call.model,
                api_key_hash=key_hash(call.key),
                job_id=call.job_id,
                attempt_id=call.attempt_id,
                status_code=status,
                outcome=outcome,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                t_received=call.received,
            )
        )

    # -- other endpoints (answered, never recorded: they are not inference) ---------------------------

    async def _list_models(self, state: ProviderState, scope: Scope, send: Send) -> None:
        call = _Call(state, self._clock(), self._next_serial(), {})
        try:
            self._authenticate(state, dict(scope["headers"]), scope.get("query_string", b""))
        except FarmError as err:
            await self._fail(call, err, send, record=False)
            return
        answer = state.wire.models(state.listed_models(), state.name, int(call.received))
        await send_json(send, 200, answer, call.headers())

    async def _unrouted(self, state: ProviderState, scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        call = _Call(state, self._clock(), self._next_serial(), {})
        where = f"{scope['method']} {scope['path']}"
        err = FarmError("not_found", f"Invalid URL ({where}): not an endpoint of the {state.wire.name} wire.")
        await self._fail(call, err, send, record=False)

    def _next_serial(self) -> str:
        self._serial += 1
        return f"{self._serial_prefix}{self._serial:012x}"


def _output_cap(behaviour: ProviderBehaviour, model: str, prompt_tokens: int, max_tokens: int | None) -> int:
    """The most this request may generate; raises if prompt plus requested output overflow the window."""
    window = behaviour.context_for(model)
    if max_tokens is None:
        if prompt_tokens < window:
            return min(DEFAULT_MAX_OUTPUT, window - prompt_tokens)
    elif prompt_tokens + max_tokens <= window:
        return max_tokens
    asked = prompt_tokens + (max_tokens or 0)
    raise FarmError(
        "context_length",
        f"This model's maximum context length is {window} tokens. However, you requested {asked} tokens "
        f"({prompt_tokens} in the messages, {max_tokens or 0} in the completion). Please reduce the length "
        "of the messages or completion.",
        param="messages",
        limit=window,
        requested=asked,
    )


def _decode(raw: bytes) -> tuple[dict[str, Any], FarmError | None]:
    """The body as a JSON object, or an empty one plus the 400 to raise once auth has passed."""
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, FarmError("invalid", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return {}, FarmError("invalid", "The request body must be a JSON object.")
    return body, None
