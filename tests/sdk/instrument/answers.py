"""Provider answers as their APIs send them (JSON), one of each shape Pulse reads."""

from __future__ import annotations

OPENAI_CHAT = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
              "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 10}},
}
ANTHROPIC_MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 7},
}
RESPONSES_ANSWER = {
    "id": "resp_1", "object": "response", "model": "o4-mini", "output": [],
    "usage": {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 40,
              "output_tokens_details": {"reasoning_tokens": 32}, "total_tokens": 90},
}
EMBEDDINGS_ANSWER = {"object": "list", "model": "text-embedding-3-small", "data": [],
                     "usage": {"prompt_tokens": 9, "total_tokens": 9}}
COMPLETION = {
    "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
