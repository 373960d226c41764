"""Redaction before storage, on and off side by side: recall on seeded canaries, leaks, CPU.

``--requests`` chat requests (1,000 by default) each carry three personal-data canaries of
different kinds, generated and embedded in ordinary sentences: e-mail addresses, phone
numbers (valid for their country, in national, international and E.164 formats, US, GB, DE,
FR, IN and +-prefixed others), Luhn-valid card numbers (Visa, Mastercard, Amex, Discover;
spaced, dashed or bare), checksum-valid IBANs (DE, GB, FR, NL, ES, IT; grouped or compact)
and API keys (OpenAI, AWS, GitHub, Google, Slack, Stripe, JWTs, bearer tokens). Every tenth
answered request gets feedback whose comment carries one more. ``--controls`` requests (a
fifth of ``--requests`` by default) carry no personal data but plenty of numbers (versions,
dates, prices, order numbers, hashes, UUIDs, ports, ISBNs).

Each side runs a real gateway (``llmops serve``) over the stub engine
(``tests/serving/stub_engine.py --echo``: it answers with the prompt, so the answer column
carries the canaries too), in an environment whose ``redaction.enabled`` is true (``on``) or
false (``off``), its write-ahead log kept until the gateway stops (a long flush interval)
and then committed to Delta. It prints, for ``on``:

- recall per entity type: the canaries no longer found in the stored request and answer
  (nor in feedback), over those sent (goal: at least 0.99);
- canaries found anywhere in the write-ahead log files and the Delta tables (goal: 0);
- false positives: placeholders in the stored control requests;

and for both sides the gateway process's CPU seconds per request (psutil: user + system,
while the load runs) and latency p50/p99, with on / off ratios. ``off`` shows the load
itself stores every canary (the check finds what it should).

Usage:
  python benchmarks/pii_redaction.py                    # 1,000 requests per side
  python benchmarks/pii_redaction.py --requests 100 --concurrency 4
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _harness import REPO, free_port, parser, start_gateway, stop_process_tree, write_json

from llmops.processes import start_process, wait_for_http

KEY_ENV = "LLMOPS_ENGINE_API_KEY"
STUB = REPO / "tests" / "serving" / "stub_engine.py"
ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "API_KEY")
ALNUM = string.ascii_letters + string.digits
ENVS = {"on": "redacting", "off": "plain"}  # each side's environment ("on" is YAML's true)


# --- canaries ------------------------------------------------------------------------------

def email(rng: random.Random) -> str:
    first = rng.choice(["ada", "alan", "grace", "linus", "margaret", "dennis", "barbara", "ken"])
    last = rng.choice(["lovelace", "turing", "hopper", "torvalds", "hamilton", "ritchie"])
    sep = rng.choice([".", "_", "", "-"])
    domain = rng.choice(["example.com", "mail.example.org", "corp.example.co.uk", "example.de",
                         "uni-example.fr", "example.io", "post.example.net"])
    return f"{first}{sep}{last}{rng.randint(1, 9999)}@{domain}"


def phone(rng: random.Random) -> str:
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType

    national_ok = ("US", "GB", "DE", "FR", "IN")
    while True:
        region = rng.choice([*national_ok, "ES", "IT", "NL", "AU", "JP"])
        kind = rng.choice([PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE])
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        digits = str(example.national_number)
        keep = max(3, len(digits) - 5)
        digits = digits[:keep] + "".join(rng.choice(string.digits)
                                         for _ in range(len(digits) - keep))
        number = phonenumbers.parse(f"+{example.country_code}{digits}")
        if not phonenumbers.is_valid_number(number):
            continue
        styles = [PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]
        if region in national_ok:
            styles.append(PhoneNumberFormat.NATIONAL)
        text = phonenumbers.format_number(number, rng.choice(styles))
        if region == "US" and rng.random() < 0.4:  # 415-555-2671, 415.555.2671
            text = rng.choice(["-", "."]).join(
                [digits[:3], digits[3:6], digits[6:]])
        return text


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15),
                                 ("37", 15), ("6011", 16)])
    number = _luhn_complete(prefix + "".join(rng.choice(string.digits)
                                             for _ in range(length - len(prefix) - 1)))
    sep = rng.choice([" ", "-", ""])
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, 16, 4)]
    return sep.join(groups)


_IBAN_BBAN = {  # country: BBAN layout (d digit, A upper letter, c upper letter or digit)
    "DE": "d" * 18, "GB": "AAAA" + "d" * 14, "FR": "d" * 10 + "c" * 11 + "dd",
    "NL": "AAAA" + "d" * 10, "ES": "d" * 20, "IT": "A" + "d" * 10 + "c" * 12,
}


def iban(rng: random.Random) -> str:
    country = rng.choice(list(_IBAN_BBAN))
    pools = {"d": string.digits, "A": string.ascii_uppercase,
             "c": string.ascii_uppercase + string.digits}
    bban = "".join(rng.choice(pools[c]) for c in _IBAN_BBAN[country])
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def api_key(rng: random.Random) -> str:
    def rand(n: int, pool: str = ALNUM) -> str:
        return "".join(rng.choice(pool) for _ in range(n))

    kind = rng.choice(["openai", "aws", "github", "google", "slack", "stripe", "jwt", "bearer"])
    if kind == "openai":
        return "sk-" + rng.choice(["", "proj-"]) + rand(38) + rng.choice(string.digits) + rand(9)
    if kind == "aws":
        return "AKIA" + rand(16, string.ascii_uppercase + string.digits)
    if kind == "github":
        return "ghp_" + rand(36)
    if kind == "google":
        return "AIza" + rand(35, ALNUM + "_-")
    if kind == "slack":
        return f"xoxb-{rand(12, string.digits)}-{rand(12, string.digits)}-{rand(24)}"
    if kind == "stripe":
        return "sk_live_" + rand(24)
    if kind == "jwt":
        return (_b64({"alg": "HS256", "typ": "JWT"}) + "."
                + _b64({"sub": rand(10, string.digits), "name": rand(8)}) + "." + rand(43))
    return "Bearer " + rand(32) + "." + rand(16)  # the canary is the token after "Bearer"


_MAKE = {"EMAIL_ADDRESS": email, "PHONE_NUMBER": phone, "CREDIT_CARD": card, "IBAN_CODE": iban,
         "API_KEY": api_key}
_SAY = {
    "EMAIL_ADDRESS": ["Please reply to {x} with the details.", "My address is {x}, thanks.",
                      "Forward it to {x} when you can."],
    "PHONE_NUMBER": ["You can call me at {x} after five.", "My number is {x}.",
                     "Text {x} if the build breaks again."],
    "CREDIT_CARD": ["Charge the renewal to my card {x} please.", "The card ending the order was "
                    "{x}.", "I paid with {x} yesterday."],
    "IBAN_CODE": ["Wire the refund to {x} by Friday.", "Our account is {x}.",
                  "Use IBAN {x} for the invoice."],
    "API_KEY": ["Here is my key {x}, why does it fail?", "I set the token to {x} in the config.",
                "The request sends the header Authorization: {x} and gets 401."],
}
_QUESTIONS = ["How do I promote a chain to production?", "Why is my index update slow?",
              "What does the gateway log for each request?", "How are adapters hot-loaded?"]
_CONTROLS = [
    "Upgrade from 2.2.366 to 3.8.18 on 2024-05-01 at 10:30, then restart.",
    "Order 123456 costs $1,299.99 and ships in 3-5 days; 42 items left.",
    "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed request 123e4567-e89b-12d3-a456-426614174000.",
    "The server listens on port 8080, the metrics on 9090, with a 30 s timeout.",
    "ISBN 978-3-16-148410-0, page 214, chapter 12, published 1998.",
    "Set max_tokens to 4096, top_p to 0.95 and the seed to 1234567 for the run.",
    "The table has 10,000,000 rows and 24 columns; the p99 is 152 ms.",
    "Run pytest -k test_42 -n 2 and check tests/serving/test_gateway.py line 1187.",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 matches.",
    "Version v1.20.3-rc.1 was tagged in build 20240501.7 for release 2024.05.",
]


def request_texts(n: int, seed: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """``n`` prompts, each with three canaries of different kinds: (text, [(entity, canary)])."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kinds = rng.sample(ENTITIES, 3)
        written = [(kind, _MAKE[kind](rng)) for kind in kinds]
        sentences = [rng.choice(_SAY[kind]).format(x=value) for kind, value in written]
        canaries = [(kind, value.removeprefix("Bearer ")) for kind, value in written]
        out.append((" ".join([*sentences, rng.choice(_QUESTIONS)]), canaries))
    return out


# --- the load ------------------------------------------------------------------------------

def start_stub(work: Path, key: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = work / "stub.log"
    proc = start_process([sys.executable, str(STUB), "--port", str(port), "--echo"], log,
                         env={**os.environ, "VLLM_API_KEY": key})
    wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30, proc=proc, log_path=log,
                  what="the stub engine")
    return f"http://127.0.0.1:{port}/v1", proc


def run_side(work: Path, side: str, engine: str, key: str, prompts: list, controls: list[str],
             concurrency: int, seed: int) -> dict[str, Any]:
    import httpx
    import psutil

    port = free_port()
    (work / "serving" / "endpoint.yaml").write_text(
        f"engine:\n  url: {engine}\n  served_model_name: base\n  enable_lora: false\n"
        f"gateway:\n  host: 127.0.0.1\n  port: {port}\n  max_tokens_cap: 1024\n"
        "  log_flush_interval_s: 3600\n"  # the rows stay in the log files until the stop
        # a key on both sides (any environment but dev requires one), with no limits
        "auth:\n  default_max_concurrent: null\n  default_requests_per_minute: null\n")
    client_key = secrets.token_hex(16)
    proc = start_gateway(work, port, env={"LLMOPS_ENV": ENVS[side], KEY_ENV: key,
                                          "LLMOPS_API_KEYS": f"{client_key}=invoke,feedback"},
                         ready_path="/readyz")
    url = f"http://127.0.0.1:{port}"
    gateway = psutil.Process(proc.pid)
    jobs = [(f"{side}-{i}", text) for i, (text, _) in enumerate(prompts)]
    jobs += [(f"{side}-c{i}", text) for i, text in enumerate(controls)]
    random.Random(seed).shuffle(jobs)
    latencies: list[float] = []
    answers: dict[str, str] = {}
    feedback: dict[str, str] = {}  # client id -> the canary its feedback comment carries
    failed: list[str] = []
    lock = threading.Lock()
    rng = random.Random(seed + 1)
    extra = {f"{side}-{i}": email(rng) for i in range(0, len(prompts), 10)}

    def worker(mine: list[tuple[str, str]]) -> None:
        with httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {client_key}"}) as client:
            for rid, text in mine:
                t0 = time.perf_counter()
                resp = client.post("/v1/chat/completions", headers={"X-Request-Id": rid}, json={
                    "model": "base", "max_tokens": 1024,
                    "messages": [{"role": "user", "content": text}]})
                took = time.perf_counter() - t0
                if resp.status_code != 200:
                    with lock:
                        failed.append(f"{rid}: {resp.status_code} {resp.text[:200]}")
                    continue
                answer = resp.json()["choices"][0]["message"]["content"]
                with lock:
                    latencies.append(took)
                    answers[rid] = answer
                if rid in extra:
                    fb = client.post("/v1/feedback", json={
                        "request_id": resp.headers["x-request-id"], "rating": -1,
                        "comment": f"Wrong: my address is {extra[rid]}, not that one."})
                    with lock:
                        if fb.status_code == 200:
                            feedback[rid] = extra[rid]
                        else:
                            failed.append(f"feedback {rid}: {fb.status_code}")

    before = gateway.cpu_times()
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(jobs[i::concurrency],))
               for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    after = gateway.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    wal = "".join(p.read_text(errors="replace")
                  for p in (work / ".llmops" / ENVS[side] / "wal").rglob("*.jsonl"))
    stop_process_tree(proc, grace_s=120)  # the write-ahead log commits to Delta as it stops
    unchanged = sum(answers.get(f"{side}-{i}") == text for i, (text, _) in enumerate(prompts))
    return {"wall": wall, "cpu": cpu, "requests": len(answers), "latencies": latencies,
            "failed": failed, "wal": wal, "feedback": feedback, "answers_unchanged": unchanged}


def _norm(text: str) -> str:
    return re.sub(r"[\s().\-]", "", text)


def score(work: Path, side: str, prompts: list, controls: list[str], run: dict[str, Any]
          ) -> dict[str, Any]:
    """Recall per entity, canaries left in the log files and tables, control false positives."""
    from llmops.lakehouse import read_table

    lake = work / ".llmops" / ENVS[side] / "lakehouse"
    log = read_table(lake, "inference_log")
    rows = log.set_index("client_request_id")
    fb = read_table(lake, "feedback")
    sent: Counter[str] = Counter()
    kept: Counter[str] = Counter()  # canary occurrences still found in what was stored
    for i, (_, canaries) in enumerate(prompts):
        rid = f"{side}-{i}"
        if rid not in rows.index:
            continue
        stored = f"{rows.at[rid, 'request']}\n{rows.at[rid, 'response']}"
        flat = _norm(stored)
        for entity, value in canaries:
            sent[entity] += 2  # in the request and in the echoed answer
            if value in stored or _norm(value) in flat:
                kept[entity] += min(2, max(stored.count(value), 1))
    comments = "\n".join(str(c) for c in fb["comment"])
    for value in run["feedback"].values():
        sent["EMAIL_ADDRESS"] += 1
        kept["EMAIL_ADDRESS"] += value in comments
    recall = {e: round(1 - kept[e] / sent[e], 4) if sent[e] else None for e in ENTITIES}
    everything = (run["wal"] + log.to_json(orient="records", date_format="iso")
                  + fb.to_json(orient="records", date_format="iso"))
    values = [v for _, cs in prompts for _, v in cs] + list(run["feedback"].values())
    left = {v for v in values if v in everything or json.dumps(v)[1:-1] in everything}
    placeholders = re.compile(r"<(EMAIL_ADDRESS|PHONE_NUMBER|CREDIT_CARD|IBAN_CODE|API_KEY)>")
    false_pos: Counter[str] = Counter()
    for i in range(len(controls)):
        rid = f"{side}-c{i}"
        if rid in rows.index:
            for m in placeholders.finditer(str(rows.at[rid, "request"])):
                false_pos[m.group(1)] += 1
    return {"sent": dict(sent), "recall": recall, "canaries_left": len(left),
            "canaries_total": len(set(values)), "false_positives": dict(false_pos),
            "control_requests": len(controls), "rows": len(log), "feedback_rows": len(fb)}


def main() -> None:
    p = parser(__doc__, json_out=True, workdir=True)
    p.add_argument("--requests", type=int, default=1000, help="requests with canaries per side")
    p.add_argument("--controls", type=int, default=None,
                   help="requests without personal data per side (default: requests / 5)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=28)
    args = p.parse_args()
    controls_n = args.requests // 5 if args.controls is None else args.controls
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pii-bench-"))
    for env in ENVS.values():
        shutil.rmtree(work / ".llmops" / env, ignore_errors=True)
    (work / "serving").mkdir(parents=True, exist_ok=True)
    (work / "llmops.yaml").write_text(
        "project: bench\nenvs:\n  redacting:\n    redaction: {enabled: true}\n"
        "  plain:\n    redaction: {enabled: false}\n")
    prompts = request_texts(args.requests, args.seed)
    controls = [_CONTROLS[i % len(_CONTROLS)] for i in range(controls_n)]
    key = secrets.token_hex(16)
    engine, stub = start_stub(work, key)
    results: dict[str, Any] = {}
    try:
        for side in ("off", "on"):
            print(f"side {side}: {args.requests} requests with canaries, {controls_n} controls, "
                  f"{args.concurrency} at once ...", flush=True)
            run = run_side(work, side, engine, key, prompts, controls, args.concurrency,
                           args.seed)
            results[side] = {**score(work, side, prompts, controls, run),
                             **{k: run[k] for k in ("wall", "cpu", "requests", "failed",
                                                    "answers_unchanged")},
                             "latencies": run["latencies"]}
    finally:
        stop_process_tree(stub, grace_s=5)

    total = args.requests + controls_n
    print(f"\nrequests per side: {total} ({args.requests} with 3 canaries each, "
          f"{controls_n} controls); failed: "
          + ", ".join(f"{s} {len(results[s]['failed'])}" for s in results))
    on = results["on"]
    print("\nrecall on (canaries redacted / sent, request + answer + feedback):")
    for entity in ENTITIES:
        print(f"  {entity:<15}{on['recall'][entity]!s:>8}   (sent {on['sent'].get(entity, 0)})")
    print(f"canaries left in the write-ahead log and the Delta tables: on {on['canaries_left']} "
          f"of {on['canaries_total']}; off {results['off']['canaries_left']} "
          f"(the check finds what is stored)")
    print(f"answers unchanged for the client: on {on['answers_unchanged']}/{args.requests}, "
          f"off {results['off']['answers_unchanged']}/{args.requests}")
    print(f"false positives on {controls_n} control requests: {on['false_positives'] or 0}")
    print(f"\n{'side':<6}{'CPU s':>8}{'CPU ms/req':>12}{'p50 ms':>9}{'p99 ms':>9}{'wall s':>8}")
    for side in ("off", "on"):
        r = results[side]
        lat = sorted(r["latencies"])
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0] if lat else 0] * 99
        r["cpu_ms_per_request"] = r["cpu"] / max(r["requests"], 1) * 1000
        r["p50_ms"], r["p99_ms"] = q[49] * 1000, q[98] * 1000
        print(f"{side:<6}{r['cpu']:8.2f}{r['cpu_ms_per_request']:12.2f}{r['p50_ms']:9.1f}"
              f"{r['p99_ms']:9.1f}{r['wall']:8.1f}")
    off = results["off"]
    print(f"on / off: CPU per request {on['cpu_ms_per_request'] / off['cpu_ms_per_request']:.2f}x"
          f", p50 {on['p50_ms'] / off['p50_ms']:.2f}x, p99 {on['p99_ms'] / off['p99_ms']:.2f}x; "
          f"redaction costs {on['cpu_ms_per_request'] - off['cpu_ms_per_request']:.2f} ms CPU "
          "per request")
    for side in results:
        results[side].pop("latencies")
    write_json(args.json_out, results)


if __name__ == "__main__":
    main()
