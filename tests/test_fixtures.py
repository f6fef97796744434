"""The fixture models and payloads: deterministic, loadable by transformers, well described.

Building and running the models needs an interpreter with torch and transformers. The
suite's own environment usually has neither, so these tests look for one (the interpreter
running pytest, or SERVEGATE_FIXTURES_PYTHON) and skip with the reason when there is none.
The catalog and payload tests need nothing beyond the standard library.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servegate.errors import ServegateError
from servegate.fixtures import catalog, payloads
from servegate.fixtures.catalog import TASKS, FixtureError, build_fixtures, load_fixtures
from tests.conftest import project_python

LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "PIL")

TEXT_TASKS = tuple(t for t in TASKS if t != "image-classification")


@functools.lru_cache(maxsize=1)
def fixtures_python() -> str | None:
    """An interpreter that can run fixtures/models.py, or None."""
    candidates = [os.environ.get("SERVEGATE_FIXTURES_PYTHON"), sys.executable]
    probe = "import " + ", ".join(LIBRARIES)
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", probe], capture_output=True, timeout=120, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    # the project's own fixtures env, as the suite makes it (created on first use)
    return str(project_python("fixtures"))


def need_python() -> str:
    python = fixtures_python()
    if python is None:
        pytest.skip(
            "no interpreter with " + ", ".join(LIBRARIES) + " to build the fixture models: "
            "run pytest with one, or point SERVEGATE_FIXTURES_PYTHON at one "
            "(e.g. a reference server's virtualenv)"
        )
    return python


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> catalog.FixtureSet:
    """The full fixture set, built through the catalog API."""
    python = need_python()
    return build_fixtures(tmp_path_factory.mktemp("state"), python, log=lambda line: None)


@pytest.fixture(scope="module")
def built_again(tmp_path_factory) -> Path:
    """A second, independent build (another process, another directory)."""
    python = need_python()
    out = tmp_path_factory.mktemp("again") / "set"
    subprocess.run(
        [python, str(catalog.BUILDER), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------- the built set


def test_building_twice_gives_identical_files(built, built_again):
    """Fixtures are deterministic: two builds give byte-identical manifests and model files."""
    first, second = tree_digest(built.root), tree_digest(built_again)
    assert first == second
    assert any(name.endswith("model.safetensors") for name in first)
    assert any(name.endswith("tokenizer.json") for name in first)


def test_manifest_hashes_match_the_files(built):
    """Every file the manifest lists has the sha256 the manifest gives, and nothing is unlisted."""
    manifest = json.loads((built.root / "manifest.json").read_text())
    for entry in manifest["models"]:
        model_dir = built.root / entry["name"]
        assert entry["files"] == tree_digest(model_dir), entry["name"]
        assert "model.safetensors" in entry["files"], "weights must be saved as safetensors"


def test_the_set_has_one_model_per_task(built):
    """One ``tiny-<task>`` model per fixture task, in TASKS order."""
    assert [m.task for m in built.models.values()] == list(TASKS)
    for task in TASKS:
        model = built.for_task(task)
        assert model.name == f"tiny-{task}"
        assert model.path.is_dir()


def test_labels_and_mask_token_are_described(built):
    """Classification labels follow id2label order; only fill-mask names a mask token."""
    assert built.for_task("text-classification").labels == ("NEGATIVE", "POSITIVE")
    assert built.for_task("token-classification").labels == (
        "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
    )  # fmt: skip
    assert built.for_task("image-classification").labels == ("cat", "dog", "bird")
    assert built.for_task("question-answering").labels == ()
    assert built.for_task("fill-mask").mask_token == "[MASK]"
    others = [m for m in built.models.values() if m.task != "fill-mask"]
    assert all(m.mask_token is None for m in others)


def test_configs_name_their_architecture(built):
    """config.architectures is set (KServe infers the task from its suffix) and matches."""
    for model in built.models.values():
        config = json.loads((model.path / "config.json").read_text())
        assert config["architectures"] == [model.architecture]


KSERVE_SUFFIXES = {
    "text-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
    "fill-mask": "ForMaskedLM",
    "text-generation": "ForCausalLM",
    "text2text-generation": "ForConditionalGeneration",
}


@pytest.mark.parametrize("task", sorted(KSERVE_SUFFIXES))
def test_architecture_suffix_names_the_kserve_task(built, task):
    """KServe's HuggingFace server infers its task from the architecture's suffix."""
    assert built.for_task(task).architecture.endswith(KSERVE_SUFFIXES[task])


def test_text_models_take_128_positions(built):
    for task in TEXT_TASKS:
        assert built.for_task(task).max_position_embeddings >= 128, task


def test_the_set_is_small(built):
    """A few MB in all, so building and copying it is never the slow part."""
    total = sum(size for size in (p.stat().st_size for p in built.root.rglob("*") if p.is_file()))
    assert total < 8 * 1024 * 1024


# ----------------------------------------------------------------------- in transformers

PROBE = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.filterwarnings("ignore")
    import transformers
    from PIL import Image
    from transformers import AutoTokenizer, pipeline
    transformers.logging.set_verbosity_error()

    root = sys.argv[1]
    manifest = json.load(open(root + "/manifest.json"))
    ASCII = "Zyxw QUUX qwerty JKL 0123456789 Apple Inc. was founded by Steve Jobs!"
    SAMPLES = {
        "text-classification": ["I love this product.", "This movie was a waste of time."],
        "token-classification": "Apple Inc. was founded by Steve Jobs in Cupertino, California.",
        "question-answering": {
            "question": "What is the capital of France?",
            "context": "Paris is the capital and largest city of France.",
        },
        "fill-mask": "The capital of france is [MASK].",
        "feature-extraction": "Hello, how are you doing today?",
        "text-generation": "Once upon a time",
        "text2text-generation": "translate English to German: The house is wonderful.",
    }

    def plain(value):
        return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item")
                                     else o.tolist()))

    out = {}
    for entry in manifest["models"]:
        task, path = entry["task"], root + "/" + entry["name"]
        pipe = pipeline(task, model=path)
        facts = {}
        if task == "image-classification":
            result = pipe(Image.new("RGB", (40, 30), (200, 30, 30)))
        elif task == "question-answering":
            result = pipe(**SAMPLES[task])
        elif task == "feature-extraction":
            import numpy
            result = list(numpy.array(pipe(SAMPLES[task])).shape)
        else:
            result = pipe(SAMPLES[task])
        if task == "text-generation":
            chat = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Write a haiku about the sea."}]
            facts["chat"] = pipe(chat)[0]["generated_text"][-1]
            facts["generation_config"] = pipe.model.generation_config.to_dict()
        if task == "text2text-generation":
            facts["decoder_start_token_id"] = pipe.model.config.decoder_start_token_id
        if task != "image-classification":
            tok = AutoTokenizer.from_pretrained(path)
            ids = tok(ASCII)["input_ids"]
            facts.update(
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                unk_token_id=tok.unk_token_id, pad_token=tok.pad_token,
                eos_token=tok.eos_token, unk_token=tok.unk_token,
                ascii_has_unk=tok.unk_token_id in ids,
                chat_template=getattr(tok, "chat_template", None),
                tokenizer_class=type(tok).__name__,
                input_names=sorted(tok("Hello world").keys()),
            )
        out[entry["name"]] = {"task": task, "result": plain(result), "facts": plain(facts)}
    print("PROBE-RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def probed(built) -> dict:
    """What each model gives in its transformers pipeline (run in the fixture interpreter)."""
    done = subprocess.run(
        [need_python(), "-c", PROBE, str(built.root)],
        env={**os.environ, "USE_TORCH": "1", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("PROBE-RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("PROBE-RESULT "))


def result_for(probed: dict, task: str):
    return probed[f"tiny-{task}"]["result"]


def test_text_classification_labels_come_from_the_config(probed, built):
    result = result_for(probed, "text-classification")
    assert len(result) == 2
    for item in result:
        assert item["label"] in built.for_task("text-classification").labels
        assert 0.0 <= item["score"] <= 1.0


def test_token_classification_words_are_slices_of_the_input(probed, built):
    """Each entity's word is the input text between its start and end (no [UNK] words)."""
    text = "Apple Inc. was founded by Steve Jobs in Cupertino, California."
    result = result_for(probed, "token-classification")
    assert result
    for entity in result:
        assert entity["entity"] in built.for_task("token-classification").labels
        assert entity["word"].removeprefix("##") == text[entity["start"] : entity["end"]]


def test_question_answering_answer_is_the_context_span(probed):
    context = "Paris is the capital and largest city of France."
    result = result_for(probed, "question-answering")
    assert result["answer"] == context[result["start"] : result["end"]]


def test_fill_mask_sequences_contain_the_token(probed):
    result = result_for(probed, "fill-mask")
    assert len(result) == 5
    for candidate in result:
        assert candidate["token_str"].strip() in candidate["sequence"]
        assert "[MASK]" not in candidate["sequence"]


def test_feature_extraction_gives_hidden_size_vectors(probed, built):
    batch, tokens, hidden = result_for(probed, "feature-extraction")
    assert (batch, hidden) == (1, built.for_task("feature-extraction").hidden_size)
    assert tokens > 2


def test_text_generation_continues_the_prompt_with_printable_text(probed):
    """Greedy output is printable ASCII (no stray bytes) and actually generates tokens."""
    (item,) = result_for(probed, "text-generation")
    prompt = "Once upon a time"
    assert item["generated_text"].startswith(prompt)
    generated = item["generated_text"][len(prompt) :]
    assert generated and generated.isascii() and generated.isprintable()
    # Space-led words: a streaming server flushes one chunk per token.
    assert generated.startswith(" ") and len(generated.split()) == 16
    facts = probed["tiny-text-generation"]["facts"]
    assert facts["chat"]["role"] == "assistant" and facts["chat"]["content"].strip()
    assert facts["chat_template"], "chat completions need a chat template"
    assert facts["eos_token"] and facts["generation_config"]["max_new_tokens"] <= 32
    # KServe hands every tokenizer output to generate(); a causal LM rejects token_type_ids.
    assert facts["input_names"] == ["attention_mask", "input_ids"]


def test_text2text_generation_generates(probed):
    (item,) = result_for(probed, "text2text-generation")
    assert item["generated_text"].strip()
    facts = probed["tiny-text2text-generation"]["facts"]
    assert facts["decoder_start_token_id"] is not None
    assert facts["eos_token"] and facts["pad_token"] and facts["unk_token"]


def test_image_classification_labels_come_from_the_config(probed, built):
    result = result_for(probed, "image-classification")
    assert {item["label"] for item in result} == set(built.for_task("image-classification").labels)


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_pad_token_id_is_not_zero(probed, task):
    """MLServer reads a pad id of 0 as "no pad token" and silently batches one at a time."""
    facts = probed[f"tiny-{task}"]["facts"]
    assert facts["pad_token"] is not None
    assert facts["pad_token_id"] != 0, facts


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_ascii_text_never_becomes_unk(probed, task):
    assert probed[f"tiny-{task}"]["facts"]["ascii_has_unk"] is False


# ----------------------------------------------------------------------- catalog API


def write_manifest(root: Path, manifest: object) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))


def good_entry(root: Path, task: str = "fill-mask") -> dict:
    name = f"tiny-{task}"
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "config.json").write_text("{}")
    return {
        "name": name,
        "task": task,
        "architecture": "BertForMaskedLM",
        "labels": [],
        "hidden_size": 32,
        "max_position_embeddings": 128,
        "mask_token": "[MASK]",
        "files": {"config.json": "0" * 64},
    }


def test_tasks_are_the_eight_pipeline_tasks():
    assert TASKS == (
        "text-classification", "token-classification", "question-answering", "fill-mask",
        "feature-extraction", "text-generation", "text2text-generation", "image-classification",
    )  # fmt: skip


def test_load_fixtures_reads_a_valid_manifest(tmp_path):
    write_manifest(tmp_path, {"version": 1, "models": [good_entry(tmp_path)]})
    fixtures = load_fixtures(tmp_path)
    model = fixtures.for_task("fill-mask")
    assert model.path == tmp_path / "tiny-fill-mask"
    assert model.labels == () and model.mask_token == "[MASK]"
    assert fixtures.key == tmp_path.name


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FixtureError, match="manifest.json is missing"):
        load_fixtures(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "unreadable fixture manifest"),
        ("[]", "not a JSON object"),
        ('{"version": 99, "models": []}', "version 99"),
        ('{"version": 1, "models": []}', "non-empty list"),
    ],
)
def test_invalid_manifest_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(FixtureError, match=message):
        load_fixtures(tmp_path)


def test_manifest_entry_with_a_bad_field_is_named(tmp_path):
    entry = good_entry(tmp_path)
    entry["hidden_size"] = "32"
    write_manifest(tmp_path, {"version": 1, "models": [entry]})
    with pytest.raises(FixtureError, match=r"models\[0\].*'hidden_size'"):
        load_fixtures(tmp_path)


def test_manifest_listing_a_missing_file_is_an_error(tmp_path):
    entry = good_entry(tmp_path)
    entry["files"]["model.safetensors"] = "0" * 64
    write_manifest(tmp_path, {"version": 1, "models": [entry]})
    with pytest.raises(FixtureError, match="lacks model.safetensors"):
        load_fixtures(tmp_path)


def test_for_task_names_the_missing_task(tmp_path):
    write_manifest(tmp_path, {"version": 1, "models": [good_entry(tmp_path)]})
    fixtures = load_fixtures(tmp_path)
    with pytest.raises(ServegateError, match="'text-generation'.*tasks it has: fill-mask"):
        fixtures.for_task("text-generation")
    with pytest.raises(FixtureError, match="'summarization' is not a fixture task"):
        fixtures.for_task("summarization")


def test_fixture_key_changes_when_the_builder_changes(tmp_path, monkeypatch):
    builder = tmp_path / "models.py"
    shutil.copy(catalog.BUILDER, builder)
    monkeypatch.setattr(catalog, "BUILDER", builder)
    before = catalog.fixture_key()
    assert before == catalog.fixture_key()
    builder.write_text(builder.read_text() + "\n# changed\n")
    assert catalog.fixture_key() != before


def test_fixture_key_changes_when_the_requirements_change(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    shutil.copy(catalog.REQUIREMENTS, requirements)
    monkeypatch.setattr(catalog, "REQUIREMENTS", requirements)
    before = catalog.fixture_key()
    requirements.write_text(requirements.read_text().replace("4.41.2", "4.41.1"))
    assert catalog.fixture_key() != before


def test_build_failure_quotes_the_builder_output(tmp_path, monkeypatch):
    failing = tmp_path / "models.py"
    failing.write_text("import sys\nprint('building step one')\nsys.exit('torch is broken')\n")
    monkeypatch.setattr(catalog, "BUILDER", failing)
    with pytest.raises(FixtureError) as caught:
        build_fixtures(tmp_path / "state", sys.executable, log=lambda line: None)
    message = str(caught.value)
    assert "exit status 1" in message
    assert "building step one" in message and "torch is broken" in message


def test_build_timeout_is_reported(tmp_path, monkeypatch):
    slow = tmp_path / "models.py"
    slow.write_text("import time\nprint('started', flush=True)\ntime.sleep(30)\n")
    monkeypatch.setattr(catalog, "BUILDER", slow)
    with pytest.raises(FixtureError, match="did not finish within 0.5 s"):
        build_fixtures(tmp_path / "state", sys.executable, log=lambda line: None, timeout=0.5)


def test_missing_interpreter_is_a_clear_error(tmp_path):
    with pytest.raises(FixtureError, match="cannot run the fixture builder"):
        build_fixtures(tmp_path, tmp_path / "no-such-python", log=lambda line: None)


def test_a_valid_existing_set_is_reused(tmp_path, monkeypatch):
    root = tmp_path / "fixtures" / catalog.fixture_key()
    write_manifest(root, {"version": 1, "models": [good_entry(root)]})

    def must_not_run(*args, **kwargs):
        raise AssertionError("the builder ran although a valid set exists")

    monkeypatch.setattr(catalog, "_run_builder", must_not_run)
    assert build_fixtures(tmp_path, "python", log=lambda line: None).root == root


# ----------------------------------------------------------------------- payloads


def test_every_payload_loads_as_a_json_object():
    names = payloads.list_payloads()
    assert len(names) >= 20
    for name in names:
        body = payloads.load_payload(name, model="tiny-text-generation")
        assert isinstance(body, dict)
        text = json.dumps(body)
        assert "${" not in text, name


def test_expected_payloads_exist():
    names = set(payloads.list_payloads())
    for task in TASKS:
        assert f"v2_mlserver_{task}" in names
    expected = {
        "v1_text-classification", "v1_token-classification", "v1_fill-mask",
        "v1_text-generation", "v2_kserve_text-classification", "v2_kserve_feature-extraction",
        "openai_completion", "openai_chat", "openai_embeddings",
    }  # fmt: skip
    assert expected <= names


def test_model_placeholder_is_replaced():
    for name in ("openai_completion", "openai_chat", "openai_embeddings"):
        assert payloads.load_payload(name, model="tiny-x")["model"] == "tiny-x"


def test_payload_with_a_model_needs_one():
    with pytest.raises(payloads.PayloadError, match="model="):
        payloads.load_payload("openai_chat")


def test_unknown_payload_is_a_clear_error():
    with pytest.raises(payloads.PayloadError, match="no payload named 'nope'.*openai_chat"):
        payloads.load_payload("nope")


def test_load_payload_returns_a_fresh_copy():
    first = payloads.load_payload("v1_fill-mask")
    first["instances"].append("changed")
    assert payloads.load_payload("v1_fill-mask")["instances"] == [
        "The capital of france is [MASK]."
    ]


@pytest.mark.parametrize("name", [n for n in payloads.list_payloads() if n.startswith("v2_")])
def test_v2_payload_inputs_are_consistent(name):
    """Each V2 input's shape matches its data, BYTES throughout."""
    for tensor in payloads.load_payload(name)["inputs"]:
        assert tensor["datatype"] == "BYTES"
        assert tensor["shape"] == [len(tensor["data"])]


def test_mlserver_payloads_use_pipeline_argument_names():
    names = {
        task: [t["name"] for t in payloads.load_payload(f"v2_mlserver_{task}")["inputs"]]
        for task in TASKS
    }
    assert names["question-answering"] == ["question", "context"]
    assert names["text2text-generation"] == ["args"]
    assert names["image-classification"] == ["images"]
    fill = payloads.load_payload("v2_mlserver_fill-mask")["inputs"][0]["data"]
    assert fill == ["The capital of france is [MASK]."]


def test_image_payload_is_a_png():
    (tensor,) = payloads.load_payload("v2_mlserver_image-classification")["inputs"]
    assert tensor["parameters"]["content_type"] == "pillow_image"
    png = base64.b64decode(tensor["data"][0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (32, 32)
    assert png == payloads.image_png()


def test_image_png_decodes_with_pillow():
    image_module = pytest.importorskip("PIL.Image")
    import io

    with image_module.open(io.BytesIO(payloads.image_png())) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
        assert image.getpixel((31, 0)) == (255, 0, 128)
