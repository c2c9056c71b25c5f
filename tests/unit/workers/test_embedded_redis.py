import os
import signal
import subprocess
import sys
import time

import redis

from workers.embedded_redis import EmbeddedRedis


def test_embedded_redis_starts_runs_lua_and_stops() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        assert client.eval("return redis.call('TIME')[1] ~= nil", 0) == 1
        client.close()
        url = server.url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
        raise AssertionError("server still answers after stop")
    except redis.ConnectionError:
        pass


def test_embedded_redis_dies_with_a_killed_parent() -> None:
    code = (
        "from workers.embedded_redis import EmbeddedRedis\n"
        "import sys, time\n"
        "s = EmbeddedRedis().start()\n"
        "print(s.url, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    assert redis.Redis.from_url(url).ping()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
        except redis.ConnectionError:
            return
        time.sleep(0.05)
    raise AssertionError("embedded Redis outlived its SIGKILLed parent")
