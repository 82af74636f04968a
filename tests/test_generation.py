"""Generators: stop strings and loop detection, the transformers backend on tiny random-weight
Llamas (with the real SmolLM2 tokenizer and chat template), LoRA adapters, the packaged SmolLM2,
llama.cpp when installed, and the OpenAI backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import itertools
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_server import SLEEPY, OpenAIServer

from rag_app.errors import ConfigError, GeneratorError
from rag_app.generation import Generator, Message, create_generator
from rag_app.generation.repetition import (
    LoopDetector,
    TextControl,
    controlled_stream,
    first_stop,
    stop_prefix_length,
)
from rag_app.models import generator_folder
from rag_app.settings import Settings

QUESTION: list[Message] = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "Sources:\n[1] The sky is blue.\n\nQuestion: What colour is the sky?"},
]
PARIS: list[Message] = [
    {
        "role": "user",
        "content": "Sources: [1] The capital of France is Paris. Question: What is the capital of France?",
    }
]
CYCLE = [" the", " cat", " sat", "."]
"""The looping model writes these tokens round and round."""


def _with(settings: Settings, **generator: Any) -> Settings:
    return settings.model_copy(update={"generator": settings.generator.model_copy(update=generator)})


# -- stop strings and loops, on text ---------------------------------------------------------------
def test_first_stop_and_held_prefix() -> None:
    assert first_stop("abc END def STOP", ["STOP", "END"]) == 4
    assert first_stop("abc", ["x", ""]) is None
    assert stop_prefix_length("answer: EN", ["END"]) == 2
    assert stop_prefix_length("answer: E", ["END", "Eh?"]) == 1
    assert stop_prefix_length("answer", ["END"]) == 0


def test_loop_detector_trims_the_repeats() -> None:
    detector = LoopDetector()
    text = "The answer is: Paris. " + "The answer is: Paris! " * 3
    loop = detector.find(text)
    assert loop is not None and loop.period == 4
    assert TextControl((), detector).finish(text) == ("The answer is: Paris.", "repetition")


def test_loop_detector_needs_two_full_copies_and_enough_words() -> None:
    detector = LoopDetector()
    sentence = "Photosynthesis happens in the chloroplasts of plant cells, using light. "
    assert detector.find("It is very very very good.") is None  # a short run
    assert detector.find("Steps 1 2 1 2 1 2.") is None  # under min_words repeated words
    assert detector.find(sentence + sentence[:40]) is None  # not two full copies yet
    loop = detector.find(sentence * 2)
    assert loop is not None and loop.period == 10 and loop.cut == len(sentence)
    assert detector.find("The the the the the the the the the the") is not None


def _chunkings(text: str) -> list[list[str]]:
    by_char = list(text)
    by_word = [w + " " for w in text.split(" ")]
    by_word[-1] = by_word[-1][:-1]
    by_seven = [text[i : i + 7] for i in range(0, len(text), 7)]
    return [by_char, by_word, by_seven]


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("Paris is the capital [1]. It is large. ", ()),
        ("The answer is: Paris. " + "The answer is: Paris! " * 4, ()),
        ("The answer is Paris.\nQuestion: what else?", ("\nQuestion:",)),
        ("Repeat " * 20, ("zzz",)),
        ("Le café coûte 3 €. Le café coûte 3 €. Le café coûte 3 €.", ()),
    ],
)
def test_streamed_pieces_join_to_the_finished_text(text: str, stop: tuple[str, ...]) -> None:
    """However the text arrives, what is streamed is never more than the final cut keeps."""
    for chunks in _chunkings(text):
        control = TextControl(stop, LoopDetector())
        seen = ""
        for i, chunk in enumerate(chunks):  # where decoding would have stopped
            seen += chunk
            if control.should_stop(seen) or i == len(chunks) - 1:
                break
        streamed = "".join(controlled_stream(iter(chunks), control))
        assert streamed == control.finish(seen)[0]


def test_streamed_pieces_join_to_the_finished_text_on_random_loops() -> None:
    import random

    rng = random.Random(0)
    vocab = ["the", "answer", "is", ":", " ", "Paris", ".", "!", "\n", "café", "[1]", "END", "EN", "D"]
    for _ in range(500):
        words: list[str] = []
        while len(words) < 40:
            if words and rng.random() < 0.3:  # copy an earlier span: loops and near-loops
                start = rng.randrange(len(words))
                words += words[start : start + rng.randint(1, 10)]
            else:
                words.append(rng.choice(vocab))
        text = "".join(words)
        cuts = sorted(rng.sample(range(1, len(text)), min(12, len(text) - 1)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        stop = rng.choice([(), ("END",), ("is: P",)])
        control = TextControl(stop, LoopDetector(min_words=rng.choice([2, 8])))
        seen = ""
        for chunk in chunks:
            seen += chunk
            if control.should_stop(seen):
                break
        assert "".join(controlled_stream(iter(chunks), control)) == control.finish(seen)[0], text


# -- the transformers backend on tiny models ---------------------------------------------------------
@pytest.fixture(scope="session")
def smol_folder(settings: Settings) -> Path:
    """The packaged SmolLM2 converted once: its tokenizer and chat template serve the tiny models too."""
    return generator_folder(settings)


def _save_tiny(folder: Path, smol_folder: Path, build: Any) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_folder)
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    build(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, smol_folder: Path) -> Path:
    """A 2-layer random-weight Llama with the real SmolLM2 tokenizer and chat template."""
    return _save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-llama", smol_folder, lambda model, tok: None)


@pytest.fixture(scope="session")
def cycle_folder(tmp_path_factory: pytest.TempPathFactory, smol_folder: Path) -> Path:
    """A tiny Llama that, whatever the prompt, writes " the cat sat." forever.

    The layers add nothing to the residual stream (zero output projections), so each position's
    logits depend on its token alone, and the output head maps each token to the next in the cycle.
    """
    import torch

    def build(model: Any, tokenizer: Any) -> None:
        ids = [tokenizer.encode(t, add_special_tokens=False) for t in ["\n", *CYCLE]]
        assert all(len(i) == 1 for i in ids), ids
        chain = [i[0] for i in ids] + [ids[1][0]]  # "\n" (end of the prompt) -> the -> cat -> sat -> . -> the
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            for n, (token, following) in enumerate(itertools.pairwise(chain)):
                model.model.embed_tokens.weight[token].zero_()
                model.model.embed_tokens.weight[token, n] = 10.0
                model.lm_head.weight[following, n] = 50.0

    return _save_tiny(tmp_path_factory.mktemp("cycle") / "cycle-llama", smol_folder, build)


@pytest.fixture(scope="session")
def tiny(settings: Settings, tiny_folder: Path) -> Any:
    from rag_app.generation.transformers_backend import TransformersGenerator

    return TransformersGenerator(settings, folder=tiny_folder)


def test_generate_is_deterministic_at_temperature_zero(tiny: Any, tiny_folder: Path) -> None:
    first = tiny.generate(QUESTION, max_new_tokens=24)
    second = tiny.generate(QUESTION, max_new_tokens=24)
    assert first.text == second.text and first.text
    assert first.model == "tiny-llama" and first.adapter is None
    assert first.prompt_tokens > 10 and 0 < first.completion_tokens <= 24
    assert set(first.timings) == {"first_token", "total", "tokens_per_s"}
    assert 0 < first.timings["first_token"] <= first.timings["total"]
    assert tiny.dtype == "float32"


def test_answer_carries_its_token_logprobs(tiny: Any) -> None:
    done = tiny.generate(QUESTION, max_new_tokens=12)
    assert 0 < len(done.token_logprobs) <= done.completion_tokens
    assert all(lp <= 0.0 for lp in done.token_logprobs)
    assert done.state is not None  # the KV cache, for the verifier


def test_verifier_reuses_the_answer_cache_and_agrees_with_a_fresh_pass(tiny: Any) -> None:
    from rag_app.prompting import VERIFY_QUESTION

    done = tiny.generate(QUESTION, max_new_tokens=12)
    ask = [
        *QUESTION,
        {"role": "assistant", "content": done.text},
        {"role": "user", "content": VERIFY_QUESTION},
    ]
    fresh = tiny.verify(ask)
    reused = tiny.verify(ask, completion=done)
    assert 0.0 < fresh < 1.0
    assert reused == pytest.approx(fresh, abs=1e-4)
    assert done.state.cache is None  # handed over once: a second verify runs the whole prompt
    assert tiny.verify(ask, completion=done) == pytest.approx(fresh, abs=1e-4)


def test_stream_returns_its_completion(tiny: Any) -> None:
    stream = tiny.stream(QUESTION, max_new_tokens=12)
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            done = stop.value
            break
    assert done.text == "".join(pieces) == tiny.generate(QUESTION, max_new_tokens=12).text
    assert done.token_logprobs and done.state is not None


def test_too_little_memory_is_one_clear_error(
    settings: Settings, tiny_folder: Path, monkeypatch: Any
) -> None:
    from rag_app import packaged
    from rag_app.errors import ModelNotFoundError
    from rag_app.generation.transformers_backend import TransformersGenerator

    monkeypatch.setattr(packaged, "available_memory", lambda: 50_000_000)
    generator = TransformersGenerator(settings, folder=tiny_folder)
    with pytest.raises(ModelNotFoundError, match=r"needs about 0\.\d GB of memory and 0\.\d GB is available"):
        generator.load()
    assert generator._model is None


def test_auto_dtype_is_bfloat16_only_where_the_cpu_runs_it_fast(
    settings: Settings, tiny_folder: Path
) -> None:
    from rag_app.generation.transformers_backend import TransformersGenerator, cpu_has_fast_bf16

    auto = settings.model_copy(update={"generator": settings.generator.model_copy(update={"dtype": "auto"})})
    generator = TransformersGenerator(auto, folder=tiny_folder)
    import torch

    expected = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    assert generator._pick_dtype() == expected


def test_chat_template_is_the_models_own(tiny: Any) -> None:
    prompt = tiny._tokenizer().apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nAnswer from the sources.<|im_end|>\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tiny.count_tokens("The capital of France is Paris.") == 7


def test_stream_pieces_join_to_generate_text(tiny: Any) -> None:
    pieces = list(tiny.stream(QUESTION, max_new_tokens=24))
    assert len(pieces) > 1
    assert "".join(pieces) == tiny.generate(QUESTION, max_new_tokens=24).text


def test_stop_strings_cut_the_text_and_end_decoding(tiny: Any) -> None:
    full = tiny.generate(QUESTION, max_new_tokens=24)
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
    cut = tiny.generate(QUESTION, max_new_tokens=24, stop=[stop])
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < full.completion_tokens
    assert "".join(tiny.stream(QUESTION, max_new_tokens=24, stop=[stop])) == cut.text


def test_max_new_tokens_is_honoured(tiny: Any) -> None:
    done = tiny.generate(QUESTION, max_new_tokens=7)
    assert done.completion_tokens == 7 and done.finish_reason == "length"


def test_loop_detector_stops_a_looping_model(settings: Settings, cycle_folder: Path) -> None:
    from rag_app.generation.transformers_backend import TransformersGenerator

    plain = _with(settings, repetition_penalty=1.0, no_repeat_ngram_size=0)
    generator = TransformersGenerator(plain, folder=cycle_folder)
    done = generator.generate(QUESTION, max_new_tokens=100)
    assert done.finish_reason == "repetition"
    assert done.text == " the cat sat."
    assert done.completion_tokens < 20  # stopped early, not at max_new_tokens
    assert "".join(generator.stream(QUESTION, max_new_tokens=100)) == done.text


def test_penalties_count_the_answer_only() -> None:
    import torch

    from rag_app.generation.transformers_backend import AnswerNoRepeatNGram, answer_only_penalties

    prompt = [5, 6, 7, 5, 6]
    scores = torch.zeros(1, 10)
    ban = AnswerNoRepeatNGram(3, prompt_tokens=len(prompt))
    assert not torch.isinf(ban(torch.tensor([prompt]), scores.clone())).any()  # 5 6 -> 7 is in the prompt
    answer = [1, 2, 3, 1, 2]
    banned = ban(torch.tensor([prompt + answer]), scores.clone())
    assert torch.isinf(banned[0, 3]) and torch.isinf(banned).sum() == 1  # 1 2 -> 3 is in the answer
    penalty = answer_only_penalties(len(prompt), 2.0, 0)[0]
    logits = penalty(torch.tensor([[*prompt, 1]]), torch.ones(1, 10))
    assert logits[0, 1] == 0.5 and logits[0, 5] == 1.0


def test_closing_a_stream_stops_decoding(tiny: Any) -> None:
    stream = tiny.stream(QUESTION, max_new_tokens=200)
    assert next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "rag-app-generate"]


def test_stream_reraises_errors_from_the_decoding_thread(tiny: Any) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        list(tiny.stream(QUESTION, max_new_tokens=0))


def test_lora_adapter_is_loaded_and_named(settings: Settings, tiny_folder: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rag_app.generation.transformers_backend import TransformersGenerator

    base = AutoModelForCausalLM.from_pretrained(tiny_folder)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = tmp_path / "my-adapter"
    get_peft_model(base, config).save_pretrained(str(adapter))
    generator = TransformersGenerator(_with(settings, adapter=str(adapter)), folder=tiny_folder)
    assert generator.adapter_id == "my-adapter"
    done = generator.generate(QUESTION, max_new_tokens=5)
    assert done.adapter == "my-adapter" and done.text
    reference = AutoModelForCausalLM.from_pretrained(tiny_folder)
    changed = generator._model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(changed, reference.model.layers[0].self_attn.q_proj.weight)
    assert "lora" not in " ".join(n for n, _ in generator._model.named_parameters())  # merged


def test_adapter_settings_errors(settings: Settings, tiny_folder: Path, tmp_path: Path) -> None:
    from rag_app.generation.transformers_backend import TransformersGenerator

    with pytest.raises(ConfigError, match=r"generator\.adapter: .* \(no adapter_config\.json\)"):
        TransformersGenerator(_with(settings, adapter=str(tmp_path)), folder=tiny_folder)
    try:
        import finetune.registry  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ConfigError, match="no adapter registry yet"):
            TransformersGenerator(_with(settings, adapter="promoted"), folder=tiny_folder)


def test_create_generator_picks_the_backend(settings: Settings, tiny: Any) -> None:
    from rag_app.generation.openai_backend import OpenAIGenerator
    from rag_app.generation.transformers_backend import TransformersGenerator

    local = create_generator(settings)
    assert isinstance(local, TransformersGenerator) and isinstance(local, Generator)
    assert local.model_id == "SmolLM2-135M-Instruct" and local._model is None  # nothing loaded yet
    served = create_generator(_with(settings, backend="openai", base_url="http://127.0.0.1:1/v1"))
    assert isinstance(served, OpenAIGenerator) and isinstance(served, Generator)
    assert served.served_name == "SmolLM2-135M-Instruct"
    with pytest.raises(ConfigError, match=r"generator\.base_url"):
        create_generator(_with(settings, backend="openai"))
    with pytest.raises(ConfigError, match='backend = "llamacpp"'):
        create_generator(_with(settings, backend="llamacpp", adapter="promoted"))


def test_importing_generation_loads_no_heavy_library() -> None:
    code = (
        "import sys, rag_app.generation, rag_app.generation.repetition, rag_app.serving\n"
        "heavy = {'torch', 'transformers', 'openai', 'llama_cpp', 'peft'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the packaged SmolLM2 ----------------------------------------------------------------------------
@pytest.mark.slow
def test_packaged_smollm2_answers_a_grounded_question(settings: Settings, smol_folder: Path) -> None:
    generator = create_generator(settings)
    done = generator.generate(PARIS, max_new_tokens=40)
    assert "Paris" in done.text, done.text
    assert done.model == "SmolLM2-135M-Instruct" and done.finish_reason == "stop"
    assert done.timings["tokens_per_s"] > 0


@pytest.mark.slow
def test_llamacpp_backend_on_the_packaged_gguf(settings: Settings, smol_folder: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra: llamacpp)")
    generator = create_generator(_with(settings, backend="llamacpp", threads=2))
    done = generator.generate(PARIS, max_new_tokens=40)
    assert "Paris" in done.text, done.text
    assert done.finish_reason == "stop" and done.prompt_tokens > 20 and done.completion_tokens > 1
    assert "".join(generator.stream(PARIS, max_new_tokens=40)) == done.text
    short = generator.generate(PARIS, max_new_tokens=3)
    assert short.finish_reason == "length" and short.completion_tokens == 3
    from rag_app.generation.transformers_backend import TransformersGenerator

    text = "Sources: [1] The capital of France is Paris."
    local = TransformersGenerator(settings, folder=smol_folder)
    assert generator.count_tokens(text) == local.count_tokens(text)


# -- the OpenAI backend against a real server ----------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny: Any) -> Iterator[tuple[OpenAIServer, str]]:
    app = OpenAIServer(tiny, ["SmolLM2-135M-Instruct", "my-adapter"], sleep_s=10)
    with app.running() as url:
        yield app, url


def _served(settings: Settings, url: str, **generator: Any) -> Any:
    return create_generator(_with(settings, backend="openai", base_url=url, **generator))


def test_openai_generate_and_stream(settings: Settings, server: tuple[OpenAIServer, str], tiny: Any) -> None:
    app, url = server
    generator = _served(settings, url)
    done = generator.generate(QUESTION, max_new_tokens=24)
    local = tiny.generate(QUESTION, max_new_tokens=24)
    assert done.text == local.text
    assert (done.prompt_tokens, done.completion_tokens) == (local.prompt_tokens, local.completion_tokens)
    assert done.model == "SmolLM2-135M-Instruct" and done.adapter is None
    assert app.requests[-1]["model"] == "SmolLM2-135M-Instruct" and app.requests[-1]["max_tokens"] == 24
    pieces = list(generator.stream(QUESTION, max_new_tokens=24))
    assert app.requests[-1]["stream"] is True
    assert len(pieces) > 1 and "".join(pieces) == local.text


def test_openai_verifier_reads_the_servers_logprobs(
    settings: Settings, server: tuple[OpenAIServer, str], tiny: Any
) -> None:
    from rag_app.prompting import VERIFY_QUESTION

    app, url = server
    generator = _served(settings, url)
    ask = [
        *QUESTION,
        {"role": "assistant", "content": "Paris [1]"},
        {"role": "user", "content": VERIFY_QUESTION},
    ]
    assert generator.verify(ask) == pytest.approx(tiny.verify(ask), abs=1e-4)
    assert app.requests[-1]["logprobs"] is True and app.requests[-1]["max_tokens"] == 1


def test_openai_sends_stop_strings(settings: Settings, server: tuple[OpenAIServer, str], tiny: Any) -> None:
    app, url = server
    full = tiny.generate(QUESTION, max_new_tokens=24).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    done = _served(settings, url).generate(QUESTION, max_new_tokens=24, stop=[stop])
    assert app.requests[-1]["stop"] == [stop]
    assert done.text == full[: full.find(stop)]


def test_openai_asks_for_the_adapter_by_name(settings: Settings, server: tuple[OpenAIServer, str]) -> None:
    app, url = server
    generator = _served(settings, url, adapter="my-adapter")
    done = generator.generate(QUESTION, max_new_tokens=4)
    assert app.requests[-1]["model"] == "my-adapter"
    assert done.adapter == "my-adapter" and done.model == "SmolLM2-135M-Instruct"
    with pytest.raises(GeneratorError, match=r"not serve model 'other' \(HTTP 404\).*generator\.adapter"):
        _served(settings, url, adapter="other").generate(QUESTION, max_new_tokens=4)


def test_openai_server_down_fails_fast_with_a_clear_error(settings: Settings) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    generator = _served(settings, url, timeout_s=30)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError) as error:
        generator.generate(QUESTION)
    assert time.perf_counter() - t0 < 5
    assert str(error.value) == (
        f"generator server at {url} is not reachable (connection refused); "
        "start it with `rag-app serve-llm` or fix generator.base_url"
    )
    with pytest.raises(GeneratorError, match="not reachable"):
        list(generator.stream(QUESTION))


def test_openai_timeout_is_a_clear_error(settings: Settings, server: tuple[OpenAIServer, str]) -> None:
    _, url = server
    generator = _served(settings, url, model=SLEEPY, timeout_s=1)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match=r"did not answer within 1 s; raise generator\.timeout_s"):
        generator.generate(QUESTION, max_new_tokens=4)
    assert time.perf_counter() - t0 < 6  # two tries of 1 s and a short back-off, not the server's 10 s


def test_openai_count_tokens_never_downloads(settings: Settings, smol_folder: Path, tiny: Any) -> None:
    text = "The capital of France is Paris, and it is large."
    packaged = _served(settings, "http://127.0.0.1:1/v1")
    assert packaged.count_tokens(text) == tiny.count_tokens(text)  # the converted folder's tokenizer
    unknown = _served(settings, "http://127.0.0.1:1/v1", model="some-org/served-model")
    assert unknown.count_tokens(text) == math.ceil(len(text) / 4)


# -- the OpenAI backend against `transformers serve` (a third-party OpenAI-compatible server) ------------
@pytest.fixture(scope="module")
def transformers_serve(smol_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``transformers serve`` of the converted packaged SmolLM2 folder on 127.0.0.1 (no hub access)."""
    pytest.importorskip("fastapi", reason="`transformers serve` needs fastapi and uvicorn (dev extra)")
    pytest.importorskip("uvicorn", reason="`transformers serve` needs fastapi and uvicorn (dev extra)")
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "transformers-serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(log.parent / "hf")}
    cli = Path(sys.executable).with_name("transformers")
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(cli),
                "serve",
                str(smol_folder),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--device",
                "cpu",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"`transformers serve` exited with {process.returncode}:\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`transformers serve` did not start in 120 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(
    settings: Settings, smol_folder: Path, transformers_serve: str
) -> None:
    # `transformers serve` names a model by the folder it loads it from
    generator = _served(settings, transformers_serve, model=str(smol_folder), timeout_s=120)
    done = generator.generate(PARIS, max_new_tokens=24)
    assert "Paris" in done.text, done.text
    assert done.prompt_tokens > 20 and 0 < done.completion_tokens <= 24
    pieces = list(generator.stream(PARIS, max_new_tokens=24))
    assert len(pieces) > 1 and "".join(pieces).strip() == done.text.strip()
    short = generator.generate(PARIS, max_new_tokens=2)
    assert short.completion_tokens <= 2 and len(short.text) < len(done.text)
