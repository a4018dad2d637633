"""Chat and instruction data for supervised fine-tuning (``rxf sft``).

Three record formats, one per line of a JSONL file (TRL's conversational, prompt-completion and
language-modeling formats):

* ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``: the loss is
  on every assistant turn;
* ``{"prompt": "...", "completion": "..."}``: the loss is on the completion. ``prompt`` may also
  be a list of messages and ``completion`` a list holding the assistant message;
* ``{"text": "..."}``: plain text, the loss on every token (continued pre-training, or data that
  is already formatted). A file holds text records only, or conversations only.

Every record is checked on reading; a mistake ends with one line naming the file, the line and
the field. :func:`samsum_chat` builds the offline default from the SAMSum dialogues of
``shared/data/summarization`` as "summarize this conversation" turns.

:func:`tokenize_chat` turns records into ``input_ids`` and ``labels`` (−100 outside the
assistant's tokens) with the tokenizer's chat template. It renders the conversation one message
at a time and marks the tokens each assistant message adds, so it needs a template whose
rendering of a conversation starts with the rendering of its first messages (prefix-preserving,
as ChatML, Llama 3 and most templates are); it says so when a template is not. A tokenizer with
no chat template (a base model) takes single-turn records as plain text, as TRL does for
prompt-completion text: the prompt, a newline unless one side already has the whitespace, the
completion and the end-of-sequence token, the loss on the completion and that token. Text records
get the end-of-sequence token too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from rxf.errors import RxfError

ROLES = ("system", "user", "assistant")
SUMMARIZE_INSTRUCTION = "Summarize this conversation in one or two sentences."


@dataclass
class ChatTask:
    """Conversations for SFT: train and eval datasets with one column, ``messages``."""

    name: str
    train: datasets.Dataset
    eval: datasets.Dataset
    source: str = ""


def _check_messages(messages: Any, where: str, *, needs_assistant: bool = True, text_allowed: bool = False) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        expected = "text or a non-empty list" if text_allowed else "a non-empty list"
        raise RxfError(f"{where}: must be {expected} of {{'role', 'content'}} messages, got {messages!r:.60}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise RxfError(f"{where}[{i}]: a message needs 'role' and 'content'")
        if message["role"] not in ROLES:
            raise RxfError(f"{where}[{i}].role: {message['role']!r} is not one of {', '.join(ROLES)}")
        if not isinstance(message["content"], str):
            raise RxfError(f"{where}[{i}].content: must be text, got {type(message['content']).__name__}")
        checked.append({"role": message["role"], "content": message["content"]})
    if needs_assistant and not any(m["role"] == "assistant" for m in checked):
        raise RxfError(f"{where}: no assistant message, so nothing to train on")
    return checked


def record_messages(record: Any, where: str) -> list[dict[str, str]]:
    """One record (either format) as a conversation; RxfError naming ``where`` and the field otherwise."""
    if not isinstance(record, dict):
        raise RxfError(f"{where}: a record must be a JSON object with 'messages' or 'prompt' and 'completion'")
    if "messages" in record:
        return _check_messages(record["messages"], f"{where}: field 'messages'")
    if "prompt" not in record or "completion" not in record:
        missing = "completion" if "prompt" in record else "prompt" if "completion" in record else "messages"
        raise RxfError(f"{where}: field {missing!r} is missing (records need 'messages', or 'prompt' and 'completion')")
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    else:
        prompt = _check_messages(prompt, f"{where}: field 'prompt'", needs_assistant=False, text_allowed=True)
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    else:
        completion = _check_messages(completion, f"{where}: field 'completion'", text_allowed=True)
        if any(m["role"] != "assistant" for m in completion):
            raise RxfError(f"{where}: field 'completion' must hold assistant messages only")
    return prompt + completion


def is_text_record(record: Any) -> bool:
    return isinstance(record, dict) and "text" in record and "messages" not in record and "prompt" not in record


def record_text(record: dict, where: str) -> str:
    if not isinstance(record["text"], str) or not record["text"].strip():
        raise RxfError(f"{where}: field 'text' must be non-empty text, got {record['text']!r:.60}")
    return record["text"]


def read_chat_jsonl(path: str | Path, what: str = "chat file") -> datasets.Dataset:
    """A JSONL file of chat or prompt/completion records (a dataset with one column, ``messages``), or of text records (column ``text``).

    ``what`` names the file in messages (``train_file``, ``eval_file``). The file is read through
    :func:`rxf.io.iter_lines`: a folder, a FIFO or a file that is not UTF-8 is one line naming it.
    """
    from rxf.io import check_json_text, iter_lines

    path = Path(path).expanduser()
    conversations, texts = [], []
    for number, line in enumerate(iter_lines(path, what), 1):
        if not line.strip():
            continue
        where = f"{what} {path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            array = number == 1 and line.lstrip().startswith("[")
            raise RxfError(f"{where}: not valid JSON ({error.msg})" + (f": {JSONL_NOT_ARRAY}" if array else "")) from None
        if number == 1 and isinstance(record, list):
            raise RxfError(f"{where}: {JSONL_NOT_ARRAY}")
        check_json_text(record, where)  # a lone surrogate escape (\\ud800) parses, but is not text
        text = is_text_record(record)
        if (conversations if text else texts):
            found, others = ("a text record", "conversations") if text else ("a conversation", "text records")
            raise RxfError(f"{where}: {found} in a file of {others}: "
                           "a file holds one kind (split it into two files, or write the text as messages)")
        if text:
            texts.append(record_text(record, where))
        else:
            conversations.append(record_messages(record, where))
    if texts:
        return datasets.Dataset.from_dict({"text": texts})
    if not conversations:
        raise RxfError(f"{what} {path} has no records")
    return datasets.Dataset.from_dict({"messages": conversations})


JSONL_NOT_ARRAY = (
    "the file looks like one JSON array, and rxf sft reads JSON Lines: one record (a JSON object) per line "
    "(convert it with: jq -c '.[]' FILE > FILE.jsonl)"
)


def split_off(data: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """A fixed held-out fraction (at least one record) of ``data``: (train, eval)."""
    if len(data) < 2:
        raise RxfError("need at least 2 records to hold some out for evaluation: pass an eval file")
    held_out = max(1, round(len(data) * fraction))
    parts = data.train_test_split(test_size=held_out, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def summarize_turns(dialogue: str, summary: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"{SUMMARIZE_INSTRUCTION}\n\n{dialogue.strip()}"},
        {"role": "assistant", "content": summary.strip()},
    ]


def samsum_chat(data_dir: str | Path) -> ChatTask:
    """SAMSum as chat SFT data: train on the official validation dialogues, evaluate on the test ones."""
    from rxf.tasks.summarization import load_summarization_task

    task = load_summarization_task("samsum", data_dir=data_dir)

    def as_chat(split: datasets.Dataset) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"messages": [summarize_turns(d, s) for d, s in zip(split["document"], split["summary"])]}
        )

    return ChatTask("samsum-chat", as_chat(task.train), as_chat(task.eval["test"]), source=task.source)


def load_chat_task(
    name: str | None = None,
    *,
    train_file: str | Path | None = None,
    eval_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
) -> ChatTask:
    """Your JSONL files (``train_file``, optional ``eval_file``), or ``"samsum"`` from ``data_dir``."""
    if train_file is not None:
        train = read_chat_jsonl(train_file, "train_file")
        if eval_file is not None:
            evaluation = read_chat_jsonl(eval_file, "eval_file")
        else:
            train, evaluation = split_off(train, eval_fraction, seed)
        return ChatTask(Path(train_file).stem, train, evaluation, source=str(Path(train_file).parent))
    if eval_file is not None:
        raise RxfError("eval_file needs a train_file")
    if name is None or name.lower() not in ("samsum", "samsum-chat"):
        raise RxfError(f"unknown chat task {name!r}: use 'samsum' (with data_dir) or pass train_file")
    if data_dir is None:
        raise RxfError("the samsum chat task reads shared/data/summarization: pass data_dir")
    return samsum_chat(data_dir)


# ---- tokenization ---------------------------------------------------------------------------


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def chat_labels(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation: labels are the ids on assistant tokens, −100 elsewhere.

    Each assistant message's tokens are those its rendering adds after the generation prompt of
    the messages before it (its content and end-of-turn token: the model learns to stop).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        roles = [message["role"] for message in messages]
        if roles != ["user", "assistant"]:
            raise RxfError(f"the tokenizer has no chat template, so a conversation of roles {roles} cannot be formatted: "
                           "use a model with one, or single prompt/completion records (plain text without a template)")
        return plain_labels(tokenizer, messages[0]["content"], messages[1]["content"])
    input_ids = _render(tokenizer, messages, generation_prompt=False)
    labels = [-100] * len(input_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True) if i else []
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        start, end = len(prompt), len(through)
        if through[:start] != prompt or input_ids[:end] != through:
            raise RxfError(
                "the tokenizer's chat template does not render a conversation as a continuation of its first "
                "messages, so assistant tokens cannot be found: use a prefix-preserving template (ChatML, Llama 3)"
            )
        labels[start:end] = input_ids[start:end]
    return input_ids, labels


def _with_eos(tokenizer: Any, ids: list[int]) -> list[int]:
    eos = tokenizer.eos_token_id
    return ids + [eos] if eos is not None and (not ids or ids[-1] != eos) else ids


def plain_labels(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a prompt and its completion as plain text: the labels are the completion's tokens and the end of sequence."""
    joiner = "" if prompt[-1:].isspace() or completion[:1].isspace() else "\n"
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    input_ids = _with_eos(tokenizer, list(tokenizer(prompt + joiner + completion)["input_ids"]))
    # Where the prompt's tokens end (earlier, if the join merged tokens across the boundary).
    start = next((i for i, (a, b) in enumerate(zip(prompt_ids, input_ids)) if a != b), len(prompt_ids))
    return input_ids, [-100] * start + input_ids[start:]


def text_labels(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a text record: every token is a label."""
    input_ids = _with_eos(tokenizer, list(tokenizer(text)["input_ids"]))
    return input_ids, list(input_ids)


def tokenize_chat(data: datasets.Dataset, tokenizer: Any, max_length: int | None = None) -> datasets.Dataset:
    """``messages`` (or ``text``) → ``input_ids`` and ``labels`` (truncated to ``max_length``); records left with no label are dropped."""
    text = "text" in data.column_names

    def encode(example: dict[str, Any]) -> dict[str, Any]:
        input_ids, labels = text_labels(tokenizer, example["text"]) if text else chat_labels(tokenizer, example["messages"])
        if max_length is not None:
            input_ids, labels = input_ids[:max_length], labels[:max_length]
        return {"input_ids": input_ids, "labels": labels}

    tokenized = data.map(encode, remove_columns=data.column_names)
    return tokenized.filter(lambda example: any(label != -100 for label in example["labels"][1:]))
