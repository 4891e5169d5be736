"""Google Gemini `generateContent` (`POST {base}/v1beta/models/{model}:generateContent`): roles user/model,
a separate system instruction, `generationConfig`, usage in `usageMetadata`. Answers are returned in
OpenAI's chat.completion shape."""

from __future__ import annotations

from typing import Any

from shared.catalog import Endpoint
from shared.errors import BadResponse, ContextLengthExceeded, ProviderError
from worker.providers.base import ChatRequest, ChatResult, Credential, ProviderAdapter, chat_completion
from worker.providers.transport import RawResponse

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}
_CONFIG = {
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


class GeminiAdapter(ProviderAdapter):
    wire = "gemini"

    def _build(
        self, endpoint: Endpoint, request: ChatRequest, credential: Credential
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        system = [m.text() for m in request.messages if m.role in ("system", "developer")]
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.text()}]}
            for m in request.messages
            if m.role not in ("system", "developer")
        ]
        generation: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        for ours, theirs in _CONFIG.items():
            if ours in request.params:
                value = request.params[ours]
                generation[theirs] = [value] if ours == "stop" and isinstance(value, str) else value
        body: dict[str, Any] = {"contents": contents, "generationConfig": generation}
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        headers = {"x-goog-api-key": credential.secret, "content-type": "application/json"}
        url = f"{self.base_url}/v1beta/models/{endpoint.upstream_model}:generateContent"
        return url, headers, body

    def _parse(self, endpoint: Endpoint, data: Any, response: RawResponse) -> ChatResult:
        try:
            candidate = data["candidates"][0]
            parts = candidate.get("content", {}).get("parts", [])
            text = "".join(p.get("text", "") for p in parts)
            usage = data["usageMetadata"]
            input_tokens = int(usage.get("promptTokenCount") or 0)
            output_tokens = int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise BadResponse(f"{self.name}: answer lacks candidates or usage ({e!r})", status_code=200) from None
        cached = int(usage.get("cachedContentTokenCount") or 0)
        finish = _FINISH.get(str(candidate.get("finishReason")), "stop")
        model = data.get("modelVersion", endpoint.upstream_model)
        body = chat_completion(data.get("responseId", ""), model, text, finish, input_tokens, output_tokens)
        return ChatResult(
            body=body,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            request_id=data.get("responseId"),
            status_code=response.status,
        )

    def _classify(self, status: int, code: str | None, message: str, response: RawResponse) -> ProviderError:
        err = super()._classify(status, code, message, response)
        lowered = message.lower()
        if status == 400 and ("token count" in lowered or ("context" in lowered and "exceed" in lowered)):
            return ContextLengthExceeded(message, status_code=status, request_id=err.request_id)
        return err
