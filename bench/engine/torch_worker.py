"""PyTorch side of bench/engine: the same architecture as Sophia's engine (engine/model/transformer.ts),
loaded with the same weights from a Sophia engine state, timed on the same batch.

    python torch_worker.py STATE BATCH.json [--skip-unread]

Answers commands on stdin, one JSON line each, like bench/engine/sophia-worker.ts (the protocol is in main).
By default the model is written the plain way: every block computes every position. With --skip-unread the last
block and the LM head compute only the positions that are read afterwards (in training the text positions from
the first one with loss in any row, rounded down to a multiple of 8; in the sampler's prompt pass the last
prompt position), as Sophia's engine does: the same results with less work.
"""
import json
import math
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(int(__import__("os").environ.get("BENCH_THREADS", "2")))
MASKED = -1e9


def load_state(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"SOPHIAES", "not a Sophia engine state"
    (hlen,) = struct.unpack_from("<I", raw, 8)
    header = json.loads(raw[12 : 12 + hlen])
    start = ((12 + hlen + 7) // 8) * 8
    params = {}
    for t in header["tensors"]:
        if not t["name"].startswith("p:"):
            continue
        a = np.frombuffer(raw, dtype="<f4", count=t["length"], offset=start + t["offset"]).reshape(t["shape"])
        params[t["name"][2:]] = torch.nn.Parameter(torch.from_numpy(a.copy()))
    return header["config"], params


def image_tokens(c):
    return (c["image"]["size"] // c["image"]["patch"]) ** 2


class Model(torch.nn.Module):
    def __init__(self, config, params):
        super().__init__()
        self.c = config
        self.p = torch.nn.ParameterDict({k.replace(".", "_"): v for k, v in params.items()})

    def w(self, name):
        return self.p[name.replace(".", "_")]

    def embed(self, image, tokens, positions):
        c = self.c
        s, ch, p = c["image"]["size"], c["image"]["channels"], c["image"]["patch"]
        g = s // p
        b = image.shape[0]
        patches = image.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, ch * p * p)
        img = patches @ self.w("patch_w") + self.w("patch_b") + self.w("img_pos")
        txt = self.w("tok_emb")[tokens] + self.w("pos_emb")[positions]
        return torch.cat([img, txt], dim=1)

    def block(self, l, x, bias, past=None, start=0):
        """start > 0: compute the output of positions start… only (their queries, attention, MLP); the earlier
        positions contribute keys and values. bias then holds the rows of those queries."""
        c = self.c
        d, h = c["width"], c["heads"]
        hd = d // h
        pre = f"h{l}."
        b, n, _ = x.shape
        h1 = F.layer_norm(x, (d,), self.w(pre + "ln1_g"), self.w(pre + "ln1_b"), 1e-5)
        w, wb = self.w(pre + "qkv_w"), self.w(pre + "qkv_b")
        if start:
            q = h1[:, start:] @ w[:, :d] + wb[:d]
            k, v = (h1 @ w[:, d:] + wb[d:]).split(d, dim=-1)
        else:
            q, k, v = (h1 @ w + wb).split(d, dim=-1)
        m = n - start
        q = q.reshape(b, m, h, hd).transpose(1, 2)
        k, v = [t.reshape(b, n, h, hd).transpose(1, 2) for t in (k, v)]
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(hd)) + bias, dim=-1) @ v
        x = x[:, start:] + att.transpose(1, 2).reshape(b, m, d) @ self.w(pre + "proj_w") + self.w(pre + "proj_b")
        h2 = F.layer_norm(x, (d,), self.w(pre + "ln2_g"), self.w(pre + "ln2_b"), 1e-5)
        mlp = F.gelu(h2 @ self.w(pre + "fc_w") + self.w(pre + "fc_b"), approximate="tanh") @ self.w(pre + "out_w") + self.w(pre + "out_b")
        return x + mlp, (k, v)

    def forward(self, image, tokens, positions, mask, start=0):
        """Final hidden states of the text positions and every layer's keys/values. start > 0 (--skip-unread): the
        last block computes positions start… only, and only those of them that are text positions are returned."""
        c = self.c
        b, t = tokens.shape
        n = image_tokens(c)
        x = self.embed(image, tokens, positions)
        key = torch.cat([torch.ones(b, n), mask], dim=1)
        causal = torch.triu(torch.full((n + t, n + t), MASKED), diagonal=1)
        bias = causal[None, None] + ((key - 1.0) * -MASKED)[:, None, None, :]
        caches = []
        for l in range(c["layers"]):
            last = l == c["layers"] - 1
            x, kv = self.block(l, x, bias[:, :, start:] if last else bias, start=start if last else 0)
            caches.append(kv)
        x = F.layer_norm(x, (c["width"],), self.w("lnf_g"), self.w("lnf_b"), 1e-5)
        return x[:, max(n - start, 0) :], caches

    def logits(self, hidden):
        return hidden @ self.w("head_w")


SKIP_UNREAD = "--skip-unread" in sys.argv[3:]


def loss_start(loss_mask, step=8):
    """First text position with loss in any row, rounded down to a multiple of step (as Sophia's engine does)."""
    cols = torch.nonzero(loss_mask.any(0))
    return 0 if len(cols) == 0 else int(cols[0]) // step * step


def sft_loss(model, batch):
    f = loss_start(batch["loss_mask"]) if SKIP_UNREAD else 0
    start = image_tokens(model.c) + f if SKIP_UNREAD else 0
    hidden, _ = model(batch["image"], batch["tokens"], batch["positions"], batch["mask"], start)
    logp = torch.log_softmax(model.logits(hidden), dim=-1)
    picked = logp.gather(-1, batch["targets"][:, f:, None])[..., 0]
    lm = batch["loss_mask"][:, f:]
    return -(picked * lm).sum() / lm.sum().clamp(min=1.0)


@torch.inference_mode()
def sample(model, images, prompts, n, temperature, max_tokens, seed, stop_token):
    """Batched sampling with a KV cache (torch.cat per step), left-padded prompts, like Sophia's sampler.
    Rows end at the stop token; like Sophia, finished rows stay in the batch and only live rows' tokens count."""
    c = model.c
    g = torch.Generator().manual_seed(seed)
    p = len(prompts)
    longest = max(len(q) for q in prompts)
    tok = torch.zeros(p, longest, dtype=torch.long)
    mask = torch.zeros(p, longest)
    for r, q in enumerate(prompts):
        tok[r, longest - len(q) :] = torch.tensor(q)
        mask[r, longest - len(q) :] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0).long()
    hidden, caches = model(images, tok, pos, mask, image_tokens(c) + longest - 1 if SKIP_UNREAD else 0)
    nimg = image_tokens(c)
    rows = p * n
    caches = [(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in caches]
    key_mask = torch.cat([torch.ones(p, nimg), mask], 1).repeat_interleave(n, 0)
    logits = model.logits(hidden[:, -1]).repeat_interleave(n, 0)
    lengths = torch.tensor([len(q) for q in prompts]).repeat_interleave(n)
    generated = 0
    done = torch.zeros(rows, dtype=torch.bool)
    for s in range(max_tokens):
        probs = torch.softmax(logits / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=g)
        generated += int((~done).sum())
        done |= nxt[:, 0] == stop_token
        if s == max_tokens - 1 or bool(done.all()):
            break
        x = model.w("tok_emb")[nxt] + model.w("pos_emb")[(lengths + s)[:, None]]
        key_mask = torch.cat([key_mask, torch.ones(rows, 1)], 1)
        bias = ((key_mask - 1.0) * -MASKED)[:, None, None, :]
        new = []
        for l in range(c["layers"]):
            x, kv = model.block(l, x, bias, caches[l])
            new.append(kv)
        caches = new
        x = F.layer_norm(x, (c["width"],), model.w("lnf_g"), model.w("lnf_b"), 1e-5)
        logits = model.logits(x[:, 0])
    return generated


def main():
    """Serves one JSON command per stdin line and answers one JSON line on stdout (see bench/engine.ts):
    {"cmd": "train"} → {"ms", "loss"};  {"cmd": "sample", "seed": k} → {"tokens", "seconds"};  {"cmd": "end"} → {"peakRssMB"}."""
    state_path, batch_path = sys.argv[1:3]
    config, params = load_state(state_path)
    spec = json.load(open(batch_path))
    model = Model(config, params)
    b, t = spec["batchSize"], spec["seqLen"]
    s, ch = config["image"]["size"], config["image"]["channels"]
    batch = {
        "image": torch.tensor(spec["images"], dtype=torch.float32).reshape(b, ch, s, s),
        "tokens": torch.tensor(spec["tokens"]).reshape(b, t),
        "positions": torch.tensor(spec["positions"]).reshape(b, t),
        "mask": torch.tensor(spec["attentionMask"], dtype=torch.float32).reshape(b, t),
        "targets": torch.tensor(spec["targets"]).reshape(b, t),
        "loss_mask": torch.tensor(spec["lossMask"], dtype=torch.float32).reshape(b, t),
    }
    decay = [p for k, p in model.p.items() if p.ndim >= 2]
    no_decay = [p for k, p in model.p.items() if p.ndim < 2]
    o = spec["adamw"]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weightDecay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], foreach=True,
    )
    smp = spec["sample"]
    images = torch.tensor(smp["images"], dtype=torch.float32).reshape(len(smp["prompts"]), ch, s, s)

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "train":
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = sft_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), o["maxGradNorm"])
            opt.step()
            reply({"ms": (time.perf_counter() - t0) * 1000, "loss": float(loss.detach())})
        elif cmd["cmd"] == "sample":
            t0 = time.perf_counter()
            g = sample(model, images, smp["prompts"], smp["n"], smp["temperature"], smp["maxTokens"], cmd["seed"], smp["stopToken"])
            reply({"tokens": g, "seconds": time.perf_counter() - t0})
        elif cmd["cmd"] == "end":
            reply({"peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
            return
        else:
            raise ValueError(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
