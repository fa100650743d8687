"""repocket.tools.server.LocalCluster: the suite's Redis Cluster (3 primaries + 3 replicas on
loopback), joined without redis-cli: every slot served, each primary replicated, usable by a
redis-py cluster client."""

from __future__ import annotations

import pytest

from repocket.tools.server import CLUSTER_BUS_OFFSET, SLOTS, LocalCluster, free_cluster_port

pytestmark = pytest.mark.cluster


def nodes_table(cluster: LocalCluster) -> list[list[str]]:
    with cluster.nodes[0].client() as client:
        text = client.execute_command("CLUSTER", "NODES").decode()
    return [line.split() for line in text.splitlines() if line.strip()]


def test_three_primaries_each_with_a_replica_serve_every_slot(
        local_cluster: LocalCluster) -> None:
    table = nodes_table(local_cluster)
    primaries = {row[0]: row for row in table if "master" in row[2]}
    replicas = [row for row in table if "slave" in row[2]]
    assert len(primaries) == 3 and len(replicas) == 3
    assert sorted(row[3] for row in replicas) == sorted(primaries)  # one replica each
    served = set()
    for row in primaries.values():
        for part in row[8:]:
            first, _, last = part.partition("-")
            served.update(range(int(first), int(last or first) + 1))
    assert served == set(range(SLOTS))
    for node in local_cluster.nodes:
        with node.client() as client:
            assert b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")


def test_every_bus_port_is_a_valid_port(local_cluster: LocalCluster) -> None:
    for node in local_cluster.nodes:
        assert node.port + CLUSTER_BUS_OFFSET < 65536
    port = free_cluster_port()
    assert port + CLUSTER_BUS_OFFSET < 65536


def test_a_cluster_client_writes_and_reads_on_every_primary(
        local_cluster: LocalCluster) -> None:
    client = local_cluster.client()
    try:
        owners = set()
        for number in range(30):
            key = f"launcher-test:{number}"
            client.set(key, number)
            assert client.get(key) == str(number).encode()
            owners.add(client.get_node_from_key(key).port)
            client.delete(key)
        assert owners == {node.port for node in local_cluster.primaries}
    finally:
        client.close()


def test_a_cluster_needs_a_primary() -> None:
    with pytest.raises(ValueError):
        LocalCluster(masters=0)
