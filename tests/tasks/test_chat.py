"""rxf.tasks.chat: the record formats and their errors, assistant-only labels, text records, templates, and the SAMSum chat default."""

import json

import pytest

from rxf.errors import RxfError
from rxf.tasks.chat import chat_labels, load_chat_task, read_chat_jsonl, tokenize_chat
from shared_data import SHARED_DATA
from tiny_chat import chat_tokenizer, conversations, write_chat_jsonl


def test_labels_are_the_assistant_turns_with_their_end_of_turn():
    tokenizer = chat_tokenizer()
    messages = [
        {"role": "user", "content": "what is red ?"},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "blue ?"},
        {"role": "assistant", "content": "blue cat"},
    ]
    input_ids, labels = chat_labels(tokenizer, messages)
    trained = [tokenizer.convert_ids_to_tokens(label) for label in labels if label != -100]
    assert trained == ["red", "<|im_end|>", "blue", "cat", "<|im_end|>"]
    assert [i for i, label in zip(input_ids, labels) if label != -100] == [label for label in labels if label != -100]


def test_a_template_that_is_not_prefix_preserving_is_refused():
    tokenizer = chat_tokenizer()
    # Renders the last message first: a conversation does not start with its first messages' rendering.
    tokenizer.chat_template = "{% for message in messages|reverse %}{{ message['content'] }} {% endfor %}"
    messages = [{"role": "user", "content": "red"}, {"role": "assistant", "content": "blue"}, {"role": "user", "content": "cat"},
                {"role": "assistant", "content": "dog"}]
    with pytest.raises(RxfError, match="prefix-preserving"):
        chat_labels(tokenizer, messages)


def test_both_record_formats_read_into_messages(tmp_path):
    path = write_chat_jsonl(tmp_path / "chat.jsonl", conversations(4))
    data = read_chat_jsonl(path)
    assert len(data) == 4
    assert data[1]["messages"][-1]["role"] == "assistant"  # a prompt/completion record
    tokenized = tokenize_chat(data, chat_tokenizer())
    assert set(tokenized.column_names) == {"input_ids", "labels"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 2: not valid JSON"),
        ('{"prompt": "red"}', "line 2: field 'completion' is missing"),
        ('{"messages": [{"role": "user", "content": "red"}]}', "line 2: field 'messages': no assistant message"),
        ('{"messages": [{"role": "bot", "content": "red"}]}', r"line 2: field 'messages'\[0\].role: 'bot'"),
        ('{"messages": [{"role": "user"}]}', r"line 2: field 'messages'\[0\]: a message needs"),
        ('{"messages": "red"}', r"line 2: field 'messages': must be a non-empty list .* got 'red'"),
        ('{"prompt": "a", "completion": "red \\ud800"}', r"line 2: field 'completion': character 4 is '\\ud800', half of a UTF-16 surrogate pair"),
        ('[{"prompt": "a", "completion": "b"}]', "line 2: a record must be a JSON object"),
        ('{"prompt": "a", "completion": 3}', r"line 2: field 'completion': must be text or a non-empty list .* got 3"),
        (
            '{"prompt": "a", "completion": [{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}',
            "line 2: field 'completion' must hold assistant messages only",
        ),
    ],
)
def test_bad_records_are_named_by_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(conversations(1)[0]) + "\n" + line + "\n")
    with pytest.raises(RxfError, match=message) as error:
        read_chat_jsonl(path)
    assert str(path) in str(error.value)


def test_text_records_are_trained_on_every_token_with_an_end_of_sequence(tmp_path):
    tokenizer = chat_tokenizer()
    path = tmp_path / "text.jsonl"
    path.write_text('{"text": "red cat"}\n{"text": "blue dog bird"}\n')
    data = read_chat_jsonl(path)
    assert data.column_names == ["text"]
    tokenized = tokenize_chat(data, tokenizer)
    assert tokenizer.convert_ids_to_tokens(tokenized[1]["input_ids"]) == ["blue", "dog", "bird", "<|im_end|>"]
    assert tokenized[1]["labels"] == tokenized[1]["input_ids"]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"text": "red"}', '{"prompt": "a", "completion": "b"}'], "line 2: a conversation in a file of text records"),
        (['{"prompt": "a", "completion": "b"}', '{"text": "red"}'], "line 2: a text record in a file of conversations"),
        (['{"text": ""}'], "line 1: field 'text' must be non-empty text"),
        (['{"text": ["red"]}'], r"line 1: field 'text' must be non-empty text, got \['red'\]"),
        (['{"text": "red \\udc00"}'], "line 1: field 'text': character 4 is .*surrogate"),
        (['[{"text": "red"},', '{"text": "blue"}]'], "line 1: not valid JSON .*one JSON array, and rxf sft reads JSON Lines"),
    ],
)
def test_text_records_are_checked_and_not_mixed_with_conversations(tmp_path, lines, message):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RxfError, match=message):
        read_chat_jsonl(path)


def test_without_a_chat_template_a_prompt_and_completion_are_plain_text():
    tokenizer = chat_tokenizer()
    tokenizer.chat_template = None  # a base model's tokenizer
    input_ids, labels = chat_labels(tokenizer, [{"role": "user", "content": "what is red ?"}, {"role": "assistant", "content": "red cat"}])
    assert tokenizer.convert_ids_to_tokens(input_ids) == ["what", "is", "red", "?", "red", "cat", "<|im_end|>"]
    trained = [tokenizer.convert_ids_to_tokens(label) for label in labels if label != -100]
    assert trained == ["red", "cat", "<|im_end|>"]
    # Several turns cannot be formatted without a template: refused, naming the roles.
    turns = [{"role": "system", "content": "list"}, {"role": "user", "content": "red"}, {"role": "assistant", "content": "red"}]
    with pytest.raises(RxfError, match=r"no chat template, so a conversation of roles \['system', 'user', 'assistant'\]"):
        chat_labels(tokenizer, turns)


@pytest.mark.skipif(not (SHARED_DATA / "summarization" / "samsum").is_dir(), reason="shared SAMSum data not found")
def test_samsum_chat_is_built_from_the_shared_dialogues():
    task = load_chat_task("samsum", data_dir=SHARED_DATA / "summarization")
    assert (len(task.train), len(task.eval)) == (818, 819)
    first = task.train[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert first[0]["content"].startswith("Summarize this conversation")
