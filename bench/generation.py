"""Generation speed and greedy agreement on the packaged SmolLM2-135M-Instruct.

Ten fixed RAG-style prompts (numbered sources, the app's own system prompt), greedy decoding,
up to 64 new tokens each, after one warm-up generation per variant:

* transformers in float32 (the converted safetensors folder) and in bfloat16;
* llama.cpp on the Q4_1 GGUF itself, when llama-cpp-python is installed (extra ``llamacpp``).

Reported per variant: decode tokens/s (after the first token), time to first token (p50, p95),
whether each greedy answer equals the float32 one, and how many answers contain the expected
word. This is what ``generator.dtype = "auto"`` is decided on (``AUTO_CPU_DTYPE``).

    python bench/generation.py                 # writes bench/results/generation.json
    python bench/generation.py --threads 1 --rounds 3     # a busy machine: one core, best of 3
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from typing import Any

from common import RESULTS_DIR, format_table, latency_summary, peak_rss_mb, warn_if_busy, write_results

from rag_app.documents import Hit
from rag_app.generation import Generator
from rag_app.prompting import build_prompt
from rag_app.settings import Settings, default_cache_dir

ITEMS: list[tuple[str, list[str], str]] = [
    (
        "What is the capital of France?",
        ["The capital of France is Paris. It is known for the Eiffel Tower.", "Lyon is a city in France."],
        "Paris",
    ),
    (
        "Where does photosynthesis take place?",
        [
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
            "In plants, photosynthesis takes place in the chloroplasts of leaf cells.",
        ],
        "chloroplast",
    ),
    (
        "When was the Treaty of Westphalia signed?",
        ["The Peace of Westphalia was signed in 1648, ending the Thirty Years' War in Europe."],
        "1648",
    ),
    (
        "How long is the warranty on the X200 vacuum?",
        [
            "The X200 vacuum comes with a two-year limited warranty covering the motor and battery.",
            "Filters and brushes are consumables and are not covered.",
        ],
        "two",
    ),
    (
        "Which port does the service listen on by default?",
        [
            "By default the service listens on port 8080. Set PORT to change it.",
            "Logs are written to /var/log/service.log.",
        ],
        "8080",
    ),
    (
        "Who wrote Pride and Prejudice?",
        ["Pride and Prejudice is an 1813 novel by Jane Austen.", "It follows Elizabeth Bennet."],
        "Austen",
    ),
    (
        "What is the boiling point of water at sea level?",
        ["At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit)."],
        "100",
    ),
    (
        "How many employees does Acme Corp have?",
        [
            "Acme Corp was founded in 1999 in Denver.",
            "As of 2024, Acme Corp employs about 4,500 people across 12 offices.",
        ],
        "4,500",
    ),
    (
        "What does the refund policy say about opened items?",
        [
            "Unopened items can be returned within 30 days for a full refund.",
            "Opened items can only be exchanged for store credit.",
        ],
        "credit",
    ),
    (
        "Which enzyme breaks down starch in the mouth?",
        ["Salivary amylase begins the digestion of starch in the mouth.", "Pepsin acts in the stomach."],
        "amylase",
    ),
]
"""(question, source passages, a word the right answer contains)."""


def prompts(count_tokens: Any) -> list[Any]:
    """The app's own prompt (system prompt, numbered sources) for each item."""
    result = []
    for question, passages, _ in ITEMS:
        hits = [
            Hit(chunk_id=i, text=text, source=f"doc{i}.txt", page=None, start=0, end=len(text), score=1.0)
            for i, text in enumerate(passages)
        ]
        result.append(build_prompt(question, hits, count_tokens=count_tokens, budget_tokens=1200).messages)
    return result


def run_variant(
    name: str, generator: Generator, messages: list[Any], max_new_tokens: int, rounds: int
) -> dict[str, Any]:
    """Each prompt ``rounds`` times; the fastest run of each prompt is kept (others only add noise)."""
    generator.generate(messages[0], max_new_tokens=8)  # warm-up: load, first-call overheads
    warn_if_busy(name)
    rows = []
    for item, prompt in zip(ITEMS, messages, strict=True):
        runs = [_cold(generator).generate(prompt, max_new_tokens=max_new_tokens) for _ in range(rounds)]
        if len({r.text for r in runs}) != 1:
            raise SystemExit(f"{name}: greedy decoding gave different texts for the same prompt")
        done = min(runs, key=lambda r: r.timings["total"])
        rows.append(
            {
                "text": done.text,
                "finish_reason": done.finish_reason,
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "first_token_s": round(min(r.timings["first_token"] for r in runs), 4),
                "total_s": round(done.timings["total"], 4),
                "tokens_per_s": round(done.timings["tokens_per_s"], 2),
                "contains_expected": item[2].lower() in done.text.lower(),
            }
        )
    decode_tokens = sum(r["completion_tokens"] - 1 for r in rows)
    decode_time = sum(r["total_s"] - r["first_token_s"] for r in rows)
    print(f"{name}: done", flush=True)
    return {
        "variant": name,
        "decode_tokens_per_s": round(decode_tokens / decode_time, 2),
        "decode_tokens_per_s_median": round(statistics.median(r["tokens_per_s"] for r in rows), 2),
        "first_token": latency_summary([r["first_token_s"] for r in rows]),
        "answers_with_expected_word": sum(r["contains_expected"] for r in rows),
        "prompts": rows,
    }


def _cold(generator: Generator) -> Generator:
    """llama.cpp keeps the KV cache of the last prompt and reuses a shared prefix (the system prompt):
    reset it, so that time to first token covers the whole prompt, as it does with transformers."""
    llm = getattr(generator, "_llm", None)
    if llm is not None:
        llm.reset()
    return generator


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--threads", type=int, default=None, help="Threads (default: one per core).")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="Runs per prompt; the fastest is kept.")
    parser.add_argument("--no-llamacpp", action="store_true", help="Skip llama.cpp even when installed.")
    args = parser.parse_args()

    from rag_app.generation.transformers_backend import TransformersGenerator

    settings = Settings(cache_dir=default_cache_dir(), generator={"threads": args.threads})
    load_before = warn_if_busy("start")
    variants: list[tuple[str, Generator]] = [
        ("transformers float32", TransformersGenerator(settings, dtype="float32")),
        ("transformers bfloat16", TransformersGenerator(settings, dtype="bfloat16")),
    ]
    if not args.no_llamacpp and importlib.util.find_spec("llama_cpp") is not None:
        from rag_app.generation.llamacpp_backend import LlamaCppGenerator

        variants.append(("llama.cpp Q4_1 GGUF", LlamaCppGenerator(settings)))
    messages = prompts(variants[0][1].count_tokens)
    results = [run_variant(name, gen, messages, args.max_new_tokens, args.rounds) for name, gen in variants]

    reference = [r["text"] for r in results[0]["prompts"]]
    for result in results:
        same = [r["text"] == ref for r, ref in zip(result["prompts"], reference, strict=True)]
        result["greedy_equal_to_float32"] = sum(same)
        for row, equal in zip(result["prompts"], same, strict=True):
            row["equal_to_float32"] = equal
    headers = ["variant", "decode tok/s", "TTFT p50 ms", "TTFT p95 ms", "= fp32 (of 10)", "expected word"]
    table = [
        [
            r["variant"],
            r["decode_tokens_per_s"],
            r["first_token"]["p50_ms"],
            r["first_token"]["p95_ms"],
            r["greedy_equal_to_float32"],
            r["answers_with_expected_word"],
        ]
        for r in results
    ]
    print(format_table(headers, table))
    path = write_results(
        RESULTS_DIR / "generation.json",
        {
            "settings": {
                "model": settings.generator.model,
                "threads": args.threads,
                "max_new_tokens": args.max_new_tokens,
                "rounds": args.rounds,
                "repetition_penalty": settings.generator.repetition_penalty,
                "no_repeat_ngram_size": settings.generator.no_repeat_ngram_size,
                "greedy": True,
            },
            "peak_rss_mb": peak_rss_mb(),
            "results": results,
        },
        load_before,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
