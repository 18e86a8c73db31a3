"""The framing, and bad input through the real process: an error reply naming the field, and the process serves on."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from conftest import IMAGES, PROMPTS, answers, rows
from sophia_torch.client import EngineCallError, header_only
from sophia_torch.protocol import BadValue, decode_tensors, encode_frame, read_frame


def test_frames_round_trip_little_endian_buffers():
    tensors = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([1, -2], dtype=np.int64),
        "c": np.frombuffer(b"\x89PNG", dtype=np.uint8),
        "d": np.array(3.5, dtype=np.float64),
    }
    data = encode_frame({"id": 7, "ok": True, "result": {"loss": float("nan"), "x": [float("inf"), 1.5]}}, tensors)
    (length,) = struct.unpack("<I", data[:4])
    header = json.loads(data[4 : 4 + length])  # strict JSON: no NaN literal
    assert header["result"] == {"loss": "NaN", "x": ["Infinity", 1.5]}
    assert header["tensors"][0] == {"name": "a", "dtype": "float32", "shape": [2, 3], "nbytes": 24}
    assert data[4 + length : 4 + length + 8] == struct.pack("<2f", 0.0, 1.0)
    frame = read_frame(io.BytesIO(data))
    back = decode_tensors(frame)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_refused():
    data = header_only({"op": "x", "id": 1, "tensors": [{"name": "t", "dtype": "float32", "shape": [3], "nbytes": 8}]}) + b"\0" * 8
    frame = read_frame(io.BytesIO(data))
    with pytest.raises(BadValue) as err:
        decode_tensors(frame)
    assert err.value.field == "tensors[0].nbytes"


def expect_error(engine, op, args, tensors=None, type_=None, field=None, says=None):
    with pytest.raises(EngineCallError) as err:
        engine.call(op, args, tensors)
    e = err.value
    assert (type_ is None or e.type == type_) and (field is None or e.field == field), (e.type, e.field, e.message)
    if says:
        assert says in e.message, e.message
    assert engine.call("hello")[0]["protocol"] == 1  # still serving
    return e


def test_bad_input_gets_an_error_naming_the_field_and_the_process_keeps_serving(spawn, tiny_dir, tmp_path):
    engine = spawn("fresh")  # its own process: the first checks need one with no model loaded yet
    expect_error(engine, "train_everything", {}, type_="RangeError", field="op", says="unknown op")
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, rows([0], [[1, 2]]), type_="StateError", field="op")
    expect_error(engine, "load", {"model_dir": str(tmp_path / "missing")}, type_="RangeError", field="args.model_dir", says="not a directory")
    expect_error(engine, "load", {"model_dir": tiny_dir, "dtype": "bfloat16", "device": "cpu"}, type_="RangeError", field="args.dtype")
    expect_error(engine, "load", {"model_dir": tiny_dir, "role": "critic"}, field="args.role")
    engine.call("load", {"model_dir": tiny_dir})
    good = answers(engine, ["Three."])
    vocab = engine.call("hello")[0]["model"]["vocab_size"]
    image_pad = engine.call("hello")[0]["model"]["image_token_id"]
    # Shapes and lengths.
    short = rows([0], good)
    short["response_ids"] = short["response_ids"][:-1]
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, short, type_="RangeError", field="tensors.response_ids", says="expected")
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, {**rows([0], good), "response_lengths": np.array([[1]], np.int32)}, field="tensors.response_lengths")
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, rows([3], good), field="tensors.prompt_index", says="outside [0, 3)")
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, {**rows([0], good), "response_ids": np.array(good[0], np.float32)}, type_="TypeError", field="tensors.response_ids")
    # Token ids out of the vocabulary, and vision placeholders in a response.
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, rows([0], [[5, vocab]]), type_="RangeError", field="tensors.response_ids", says=f"response_ids[1] = {vocab}")
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, rows([0], [[-1]]), field="tensors.response_ids")
    expect_error(engine, "logprobs", {"prompts": PROMPTS}, rows([0], [[5, image_pad]]), field="tensors.response_ids", says="vision placeholder")
    # Prompts and images.
    expect_error(engine, "logprobs", {"prompts": []}, rows([0], good), field="args.prompts")
    bad_image = [{"messages": [{"role": "user", "content": [{"type": "image", "tensor": "nope"}]}]}]
    expect_error(engine, "logprobs", {"prompts": bad_image}, rows([0], good), field="args.prompts[0].messages[0].content[0].tensor")
    not_png = [{"messages": [{"role": "user", "content": [{"type": "image", "tensor": "junk"}]}]}]
    expect_error(engine, "logprobs", {"prompts": not_png}, {**rows([0], good), "junk": np.frombuffer(b"not an image", np.uint8)}, field="args.prompts[0].messages[0].content[0].tensor", says="PNG or JPEG")
    # Loss, weight and optimizer settings.
    grpo = {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.04, "entropy_coef": 0.001}
    expect_error(engine, "forward_backward", {"prompts": PROMPTS, "loss": grpo}, rows([0], good), field="args.loss.temperature")
    expect_error(engine, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "rm"}}, rows([0], good), type_="TypeError", field="args.loss.kind")
    expect_error(engine, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}, "weight": 0}, rows([0], good), field="args.weight")
    expect_error(engine, "forward_backward", {"prompts": PROMPTS, "loss": {**grpo, "temperature": 1.0}}, rows([0], good), field="tensors.old_logprobs")
    expect_error(engine, "optim_step", {"lr": 1e-3}, type_="RangeError", field="args.beta1")
    expect_error(engine, "optim_step", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0}, type_="StateError", field="op")
    expect_error(engine, "sample", {"prompts": PROMPTS, "max_new_tokens": 0}, IMAGES, field="args.max_new_tokens")
    expect_error(engine, "sample", {"prompts": PROMPTS, "max_new_tokens": 4, "top_p": 0}, IMAGES, field="args.top_p")
    expect_error(engine, "score", {"prompts": PROMPTS}, rows([0], good), type_="TypeError", field="op")
    # A tensor whose nbytes does not match its shape: the frame is read whole, the request refused.
    engine.send_raw(header_only({"op": "hello", "id": "x", "args": {}, "tensors": [{"name": "t", "dtype": "int32", "shape": [2], "nbytes": 4}]}) + b"\0" * 4)
    header, _ = engine.receive()
    assert header["id"] == "x" and header["ok"] is False and header["error"]["field"] == "tensors[0].nbytes"
    # Nothing above changed the model.
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0], good))
    assert engine.call("optim_step", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0})[0]["step"] == 1


def test_a_broken_frame_is_answered_and_the_process_exits(spawn):
    client = spawn("broken")
    body = b"{not json"
    client.send_raw(struct.pack("<I", len(body)) + body)
    header, _ = client.receive()
    assert header["ok"] is False and header["error"]["type"] == "ProtocolError"
    assert client.proc.wait(timeout=30) == 2
