"""The fleet's options and its cost for a single node (none), without a Redis server."""

from __future__ import annotations

import subprocess
import sys

from gatewaytui.gateway.cluster.link import redacted
from gatewaytui.gateway.config import GatewayConfig


def test_single_node_never_imports_redis() -> None:
    code = (
        "import sys\n"
        "from gatewaytui.gateway.app import create_app\n"
        "from gatewaytui.gateway.core import Gateway\n"
        "create_app(Gateway())\n"
        "assert not any(m == 'redis' or m.startswith('redis.') for m in sys.modules), 'redis'\n"
        "assert 'gatewaytui.gateway.cluster.node' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/tmp")


def test_cluster_options_resolve_and_the_redis_url_is_a_secret() -> None:
    url = "redis://:hunter2@10.0.0.5:6379/0"
    config = GatewayConfig.build(
        cluster__redis_url=url, cluster__replica_ttl="4s", cluster__publish_rate="5"
    )
    assert config.cluster_redis_url == url
    assert config.cluster_replica_ttl == 4.0 and config.cluster_publish_rate == 5.0
    assert "hunter2" not in repr(config)
    cluster = next(p for p in config.options.describe() if p.id == "cluster")
    arg = next(a for a in cluster.args if a.id == "redis_url")
    assert arg.secret and arg.is_set and arg.value != url and "hunter2" not in str(arg.value)
    assert arg.flag == "--cluster-redis-url" and arg.env == "CLUSTER_REDIS_URL"


def test_redacted_url_keeps_no_credentials() -> None:
    assert redacted("redis://:hunter2@10.0.0.5:6379/0") == "redis://10.0.0.5:6379/0"
    assert redacted("rediss://user:pw@cache.internal/2") == "rediss://cache.internal/2"


def test_single_node_state_says_cluster_off() -> None:
    from gatewaytui.gateway.core import Gateway

    state = Gateway().state()
    assert state["server"]["cluster"] == "off" and state["server"]["replica"] is None
    assert "replicas" not in state or state["replicas"] == []
