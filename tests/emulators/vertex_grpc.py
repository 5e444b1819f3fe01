"""Vertex AI's `PredictionService/StreamGenerateContent` over gRPC with TLS, on 127.0.0.1.

The messages are the real ones from google-cloud-aiplatform (`aiplatform_v1beta1.types`),
served by grpcio's generic handlers, so ChatVertexAI's GAPIC client talks to it exactly as
it talks to `{location}-aiplatform.googleapis.com`. A `TcpRelay` sits in front so that the
`drop` scenario can cut the connection itself.

The rich scenarios send what Gemini sends: thought parts (`thought: true`) and
`thoughtsTokenCount`; a `functionCall` part with its `thoughtSignature`; grounding metadata
on the last chunk, its segments in UTF-8 bytes; blocking safety ratings; a prompt's block
reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.cloud.aiplatform_v1beta1.types import content as gapic_content
from google.cloud.aiplatform_v1beta1.types import prediction_service
from google.cloud.aiplatform_v1beta1.types import tool as gapic_tool
from google.protobuf import duration_pb2, json_format
from google.protobuf.any_pb2 import Any as AnyProto
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .adc import ServiceAccount
from .certs import TLSIdentity
from .relay import TcpRelay
from .scenario import (
    BLOCK_REASON,
    ERROR_MESSAGES,
    HANG_LIMIT_S,
    RETRY_AFTER_S,
    SAFETY_CATEGORY,
    SEARCH_QUERIES,
    SOURCES,
    THOUGHT_SIGNATURE,
    THOUGHT_TOKENS,
    THOUGHTS,
    TOOL_CALL,
    USAGE,
    Emulator,
    Script,
    Seen,
    supported_spans,
    verify_jwt,
)

SERVICE = "google.cloud.aiplatform.v1beta1.PredictionService"
Request = prediction_service.GenerateContentRequest
Response = prediction_service.GenerateContentResponse
FinishReason = gapic_content.Candidate.FinishReason
Part = gapic_content.Part

_STATUS: dict[str, tuple[grpc.StatusCode, int]] = {
    "rate_limit": (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    "internal": (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL),
    "unavailable": (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    "bad_request": (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    "forbidden": (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
}


class VertexGrpcEmulator(Emulator):
    """A TLS gRPC server speaking the v1beta1 PredictionService streaming method."""

    def __init__(self, tls: TLSIdentity, account: ServiceAccount) -> None:
        super().__init__()
        self.account = account
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        handler = grpc.unary_stream_rpc_method_handler(
            self._stream_generate_content,
            request_deserializer=Request.deserialize,
            response_serializer=Response.serialize,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"StreamGenerateContent": handler}),)
        )
        credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
        backend_port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()
        self.relay = TcpRelay(backend_port)
        self.call(self.relay.start)

    @property
    def endpoint(self) -> str:
        """What `GEMINI_SSE_VERTEX_BASE_URL` is set to: `host:port`, as gRPC wants it."""
        return f"127.0.0.1:{self.relay.port}"

    def stop(self) -> None:
        self.call(self.relay.stop)
        self._server.stop(grace=None).wait(5)
        self.close_loop()

    # -- the RPC ---------------------------------------------------------------------------

    def _stream_generate_content(
        self, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        script = self.next_script()
        self.record.seen.append(self._seen(request, context))
        if script.scenario in _STATUS:
            self._abort(context, script.scenario)
        time.sleep(script.pause_before_first)
        match script.scenario:
            case "hang":
                self._wait_for_client_to_leave(context)
                return
            case "prompt_block":
                yield Response(
                    prompt_feedback=Response.PromptFeedback(
                        block_reason=Response.PromptFeedback.BlockedReason[BLOCK_REASON],
                        block_reason_message="The prompt was blocked (emulated).",
                    ),
                    usage_metadata=Response.UsageMetadata(
                        prompt_token_count=USAGE["input"], total_token_count=USAGE["input"]
                    ),
                )
                return
            case "safety":
                yield self._text(script.chunks[0])
                time.sleep(script.delay_s)
                yield _finish(FinishReason.SAFETY, output_tokens=1, rating=SAFETY_CATEGORY)
                return
            case "drop":
                for text in script.chunks[:2]:
                    yield self._text(text)
                    time.sleep(script.delay_s)
                # Cut once the relay has forwarded both texts: the client has read them.
                self.client_has_read(2)
                self.relay_cut()
                self._wait_for_client_to_leave(context)
                return
            case "tool_call":
                call = gapic_tool.FunctionCall(name=TOOL_CALL["name"], args=TOOL_CALL["args"])
                part = Part(function_call=call, thought_signature=THOUGHT_SIGNATURE)
                yield self._parts([part], finish=FinishReason.STOP)
                return
            case "thinking":
                for thought in THOUGHTS:
                    yield self._parts([Part(text=thought, thought=True)])
                    time.sleep(script.delay_s)
        yield from self._answer(script)

    def _answer(self, script: Script) -> Iterator[Any]:
        """The answer's texts, the last with STOP, usage and (`grounding`) its sources."""
        for index, text in enumerate(script.chunks):
            if index:
                time.sleep(script.delay_s)
            if index < len(script.chunks) - 1:
                yield self._text(text)
                continue
            if script.hold_last:
                self.record.held_too_long += not self.client_has_read(1)
            response = self._text(text, finish=FinishReason.STOP)
            if script.scenario == "thinking":
                response.usage_metadata = _usage(USAGE["output"], thoughts=THOUGHT_TOKENS)
            if script.scenario == "grounding":
                response.candidates[0].grounding_metadata = _grounding(script.chunks)
            yield response

    def _text(self, text: str, finish: Any = None) -> Any:
        return self._parts([Part(text=text)], finish)

    def _parts(self, parts: list[Any], finish: Any = None) -> Any:
        self.mark_sent()
        candidate = gapic_content.Candidate(
            index=0,
            content=gapic_content.Content(role="model", parts=parts),
            finish_reason=finish,
        )
        response = Response(candidates=[candidate], model_version="emulated-001")
        if finish is not None:
            response.usage_metadata = _usage(USAGE["output"])
        return response

    def relay_cut(self) -> None:
        self._loop.call_soon_threadsafe(self.relay.cut)

    def _wait_for_client_to_leave(self, context: grpc.ServicerContext) -> None:
        ended = threading.Event()
        # False when the RPC has already ended: the callback would never run.
        if not context.add_callback(ended.set) or ended.wait(HANG_LIMIT_S):
            self.record.client_gone += 1

    def _abort(self, context: grpc.ServicerContext, scenario: str) -> None:
        grpc_code, rpc_code = _STATUS[scenario]
        status = status_pb2.Status(code=rpc_code, message=ERROR_MESSAGES[scenario])
        if scenario == "rate_limit":
            detail = AnyProto()
            detail.Pack(
                error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(seconds=int(RETRY_AFTER_S))
                )
            )
            status.details.append(detail)
        assert grpc_code.value[0] == rpc_code
        context.abort_with_status(rpc_status.to_status(status))

    def _seen(self, request: Any, context: grpc.ServicerContext) -> Seen:
        metadata = dict(context.invocation_metadata())
        authorization = metadata.get("authorization")
        claims = None
        if isinstance(authorization, str) and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
            claims = verify_jwt(token, self.account.public_key_pem)
        config = json_format.MessageToDict(
            type(request.generation_config).pb(request.generation_config),
            preserving_proto_field_name=True,
        )
        system = request.system_instruction
        return Seen(
            body=json_format.MessageToDict(Request.pb(request)),
            path=f"/{SERVICE}/StreamGenerateContent",
            model=request.model,
            contents=[(c.role, "".join(p.text for p in c.parts)) for c in request.contents],
            system="".join(p.text for p in system.parts) if system.parts else None,
            generation_config=config,
            authorization=authorization if isinstance(authorization, str) else None,
            token_claims=claims,
        )


def _finish(reason: Any, *, output_tokens: int, rating: str) -> Any:
    candidate = gapic_content.Candidate(
        index=0,
        content=gapic_content.Content(role="model", parts=[]),
        finish_reason=reason,
        safety_ratings=[
            gapic_content.SafetyRating(
                category=gapic_content.HarmCategory[rating],
                probability=gapic_content.SafetyRating.HarmProbability.HIGH,
                blocked=True,
            )
        ],
    )
    return Response(candidates=[candidate], usage_metadata=_usage(output_tokens))


def _usage(output_tokens: int, thoughts: int = 0) -> Any:
    return Response.UsageMetadata(
        prompt_token_count=USAGE["input"],
        candidates_token_count=output_tokens,
        thoughts_token_count=thoughts,
        total_token_count=USAGE["input"] + output_tokens + thoughts,
    )


def _grounding(chunks: tuple[str, ...]) -> Any:
    """Grounding metadata for `chunks`: the two web sources, the spans they support."""
    return gapic_content.GroundingMetadata(
        web_search_queries=list(SEARCH_QUERIES),
        grounding_chunks=[
            gapic_content.GroundingChunk(web=gapic_content.GroundingChunk.Web(uri=uri, title=title))
            for uri, title in SOURCES
        ],
        grounding_supports=[
            gapic_content.GroundingSupport(
                segment=gapic_content.Segment(start_index=start, end_index=end, text=text),
                grounding_chunk_indices=list(sources),
            )
            for start, end, text, sources in supported_spans(chunks)
        ],
    )
