"""Whoever reaches the port cannot make the sidecar flood the apiserver.
Tokens this server has not accepted before are reviewed at a bounded rate,
per source address and overall (auth.tokenReviewsPerSourcePerSecond 5 and
auth.tokenReviewsPerSecond 25, bursts of twice as many); over it a request
gets 429 with Retry-After and no TokenReview. A refused token is not
reviewed again for the denial cache time, concurrent requests with one
token share one review, and tools/list is a call from the caller's bucket.
The reviews are counted where they land: in the real apiserver's audit log,
as writes by the sidecar's own ServiceAccount."""

import base64
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from conftest import kubeconfig_as, kubectl, sa_token
from raw_mcp import RawSession, initialize_body, post

SERVER = "flooded"
PER_SOURCE_RATE, OVERALL_RATE = 5, 25  # the defaults
PER_SOURCE_BURST, OVERALL_BURST = 2 * PER_SOURCE_RATE, 2 * OVERALL_RATE
FLOOD = 500
FLOOD_SECONDS = 3  # long enough for the sustained rate to count, not only the bursts
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]  # 8 sources: their bursts add up to more than the overall one


def random_jwt() -> str:
    """Looks like a ServiceAccount token; signed by nobody."""
    def b64(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    claims = {"iss": "https://kubernetes.default.svc", "sub": f"system:serviceaccount:x:{uuid.uuid4().hex}",
              "aud": [f"mcpkafka.dev/x/{SERVER}"], "exp": int(time.time()) + 3600}
    return f"{b64({'alg': 'RS256', 'kid': secrets.token_hex(8)})}.{b64(claims)}.{secrets.token_urlsafe(256)}"


class Audit:
    """Writes to the apiserver by one user, read from its audit log (write
    requests only, Metadata level) from a mark on."""

    def __init__(self, stack_env, username):
        self.path, self.username = stack_env["MCPK_APISERVER_AUDIT_LOG"], username

    def mark(self):
        return os.path.getsize(self.path), time.time()

    def creates(self, mark, resource):
        offset, since = mark
        with open(self.path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if (event.get("user", {}).get("username") == self.username and event.get("verb") == "create"
                    and event.get("objectRef", {}).get("resource") == resource and event.get("stage") == "ResponseComplete"):
                events.append(event)
        return events

    def settled(self, mark, resource):
        """The count once the log stopped growing with them (the apiserver writes as it answers)."""
        last = -1
        for _ in range(20):
            now = len(self.creates(mark, resource))
            if now == last:
                return now
            last = now
            time.sleep(0.5)
        return last


@pytest.fixture
def guarded(tool_grants, stack_env, start_sidecar, tmp_path, free_port):
    """A sidecar (auth.mode kubernetes, default limits) that asks the
    apiserver as its own ServiceAccount, bound to system:auth-delegator as
    the operator binds it; and the namespace whose `caller` may list topics."""
    ns = tool_grants(SERVER, {"caller": ["list_topics"], "sidecar": None})
    binding = f"mcpk-flood-{ns}"
    kubectl(stack_env, "create", "clusterrolebinding", binding, "--clusterrole=system:auth-delegator",
            f"--serviceaccount={ns}:sidecar")
    try:
        def start(limits=None, **auth):
            config = tmp_path / "sidecar.json"
            config.write_text(json.dumps({
                "server": {"name": SERVER, "namespace": ns, "environment": "dev"},
                "listen": {"address": f"127.0.0.1:{free_port}"},
                "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
                "tools": ["list_topics", "describe_topic", "cluster_status"],
                "auth": {"mode": "kubernetes", **auth},
                "limits": limits or {},
            }))
            kubeconfig = kubeconfig_as(stack_env, ns, "sidecar", tmp_path / "sidecar.kubeconfig")
            sidecar = start_sidecar("--config", str(config), env={"KUBECONFIG": str(kubeconfig)}, port=free_port)
            sidecar.wait_ready()
            return sidecar
        yield ns, start, Audit(stack_env, f"system:serviceaccount:{ns}:sidecar")
    finally:
        subprocess.run([stack_env["MCPK_KUBECTL"], "--kubeconfig", stack_env["KUBECONFIG"], "delete",
                        "clusterrolebinding", binding], capture_output=True)


def test_a_flood_of_random_tokens_makes_a_bounded_number_of_token_reviews(guarded, stack_env):
    ns, start, audit = guarded
    # Decisions expire after 2 s, so the valid caller's token is reviewed
    # again during the flood: as a token accepted before, it is not held
    # to the limits on unseen ones.
    sidecar = start(allowCacheSeconds=2)
    caller = RawSession(sidecar.port, sa_token(stack_env, ns, "caller", SERVER))
    assert caller.initialize().status == 200
    assert caller.call("list_topics").outcome == "ok"

    # The same refused token, 20 requests at once: one TokenReview.
    time.sleep(1)
    mark = audit.mark()
    same = random_jwt()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(post(sidecar.port, initialize_body(),
               {"Authorization": f"Bearer {same}"}, source="127.0.0.10"))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status for a in answers) == [401] * 20
    assert audit.settled(mark, "tokenreviews") == 1, "a refused token is reviewed once, then remembered"

    time.sleep(2 * OVERALL_BURST / OVERALL_RATE)  # the buckets are full again
    mark = audit.mark()
    flood_answers, served = [], []
    stop = threading.Event()

    def flood(source, count):
        for _ in range(count):
            answer = post(sidecar.port, initialize_body(), {"Authorization": f"Bearer {random_jwt()}"}, source=source)
            flood_answers.append((source, answer))
            time.sleep(FLOOD_SECONDS / count)

    def keep_calling():
        while not stop.is_set():
            answer = caller.call("list_topics")
            served.append((answer.status, answer.outcome if answer.status == 200 else None))
            time.sleep(0.2)

    calling = threading.Thread(target=keep_calling)
    calling.start()
    started = time.monotonic()
    flooders = [threading.Thread(target=flood, args=(s, FLOOD // len(SOURCES) + (i < FLOOD % len(SOURCES))))
                for i, s in enumerate(SOURCES)]
    for t in flooders:
        t.start()
    for t in flooders:
        t.join()
    elapsed = time.monotonic() - started
    time.sleep(2.5)  # the caller's decision expires at least once more, then is reviewed again
    stop.set()
    calling.join()
    reviews = audit.settled(mark, "tokenreviews")

    assert len(flood_answers) == FLOOD
    statuses = [a.status for _, a in flood_answers]
    refused, busy = statuses.count(401), statuses.count(429)
    assert refused + busy == FLOOD, sorted(set(statuses))
    # Every review the sidecar asked for a flood token ended in a 401; the
    # rest were not asked about. The caller's own re-reviews come on top.
    caller_reviews = reviews - refused
    window = elapsed + 2.5
    assert 0 <= caller_reviews <= window / 2 + 2, (reviews, refused, window)
    # The sidecar saw the flood within the client's window; +1 for where a token falls at its edge.
    bound = OVERALL_BURST + OVERALL_RATE * elapsed + 1
    assert refused <= bound, f"{refused} TokenReviews for {FLOOD} random tokens in {elapsed:.1f}s (bound {bound:.0f})"
    assert refused >= OVERALL_BURST, "the limit is a rate, not a wall"
    for source in SOURCES:
        mine = sum(1 for s, a in flood_answers if s == source and a.status == 401)
        assert mine <= PER_SOURCE_BURST + PER_SOURCE_RATE * elapsed + 1, (source, mine, elapsed)
    print(f"\n{FLOOD} random tokens from {len(SOURCES)} sources in {elapsed:.1f}s: "
          f"{reviews} TokenReviews ({refused} refused tokens, {caller_reviews} of the valid caller), {busy} answered 429")

    over = next(a for _, a in flood_answers if a.status == 429)
    assert int(over.headers["Retry-After"]) >= 1
    assert over.headers.get("WWW-Authenticate") is None, "429 is not 'sign in again'"
    assert over.rpc_error["data"] == {"code": "LIMIT_EXCEEDED", "retriable": True}, over.rpc_error
    bad = next(a for _, a in flood_answers if a.status == 401)
    assert bad.headers["WWW-Authenticate"].startswith("Bearer ") and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]

    assert served and all(s == (200, "ok") for s in served), served
    text = urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=5).read().decode()
    assert f'mcp_kafka_auth_refusals_total{{reason="too_many"}} {busy}' in text, text


def test_many_tools_list_calls_take_from_the_bucket_and_not_many_access_reviews(guarded, stack_env):
    ns, start, audit = guarded
    rate, burst = 1, 5
    sidecar = start(limits={"callsPerSecond": rate, "callBurst": burst})
    caller = RawSession(sidecar.port, sa_token(stack_env, ns, "caller", SERVER))
    assert caller.initialize().status == 200
    mark = audit.mark()
    answers = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: answers.append(caller.request("tools/list"))) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert all(a.status == 200 for a in answers), [a.status for a in answers]
    listed = [a for a in answers if a.rpc_error is None]
    over = [a for a in answers if a.rpc_error is not None]
    assert all([t["name"] for t in a.message["result"]["tools"]] == ["list_topics"] for a in listed), listed[0].message
    assert len(listed) <= burst + rate * elapsed + 1, f"{len(listed)} of 40 listings admitted in {elapsed:.1f}s"
    error = over[0].rpc_error
    assert error["data"]["error"]["code"] == "LIMIT_EXCEEDED" and error["data"]["error"]["retriable"] is True, error
    assert "retry in" in error["message"]
    access_reviews = audit.settled(mark, "subjectaccessreviews")
    # One per tool for the listings admitted, at most; concurrent listings
    # ask each question once, and the answers are cached.
    assert 1 <= access_reviews <= 3 * len(listed), (access_reviews, len(listed))
    print(f"\n40 concurrent tools/list of 3 tools: {len(listed)} answered, {len(over)} LIMIT_EXCEEDED, "
          f"{access_reviews} SubjectAccessReviews")
