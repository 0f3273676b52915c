import json
from pathlib import Path

import numpy as np
import pytest

from fediot.data.gateway import GatewayConfig, build_gateway_dataset, gateway_dataset_path
from fediot.data.nbaiot import read_nbaiot
from fediot.errors import ConfigError


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gw") / "gateway"
    return out, build_gateway_dataset(out, GatewayConfig(seed=0))


def test_gateway_has_25_plus_clients_each_with_benign_and_both_floods(built) -> None:
    # Prepare
    out, manifest = built
    # Execute
    devices = read_nbaiot(out)
    # Assert
    assert len(devices) >= 25
    assert set(devices) == set(manifest["devices"])
    for name, dev in devices.items():
        assert set(dev.attacks) == {"ddos.syn_flood", "ddos.udp_flood"}, name
        assert dev.benign.shape[0] == manifest["devices"][name]["rows"]["benign"] >= 500
        assert dev.attacks["ddos.syn_flood"].shape[0] == manifest["devices"][name]["rows"]["ddos.syn_flood"]
        assert np.isfinite(dev.benign).all()


def test_manifest_records_sources_and_file_hashes(built) -> None:
    # Prepare
    out, manifest = built
    # Execute
    on_disk = json.loads((out / "manifest.json").read_text())
    # Assert
    assert on_disk["files"] == manifest["files"]
    assert len(on_disk["files"]) == 3 * len(on_disk["devices"])
    assert set(on_disk["sources"]) == {
        "iot_sentinel/captures_IoT-Sentinel.tar.gz",
        "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz",
        "ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz",
    }
    assert all(n < 500 for n in on_disk["devices_skipped"].values())


def test_replayed_floods_look_like_the_device_flooding(built) -> None:
    # Prepare
    out, _ = built
    dev = read_nbaiot(out)["D-LinkSiren"]
    weight, mean = 0, 1  # MI_dir_L5_weight / _mean: the (source MAC, source IP) stream
    # Execute
    benign_rate = np.median(dev.benign[:, weight])
    udp_rate = np.median(dev.attacks["ddos.udp_flood"][:, weight])
    syn_new_stream = np.mean(dev.attacks["ddos.syn_flood"][:, weight] < 1.01)
    # Assert: the amplification flood (device IP rewritten) makes the device's own stream far denser;
    # the spoofed SYN flood opens a new (MAC, spoofed IP) stream per packet, of 60-byte frames
    assert udp_rate > 10 * benign_rate
    assert syn_new_stream > 0.9
    assert np.median(dev.attacks["ddos.syn_flood"][:, mean]) == 60.0


def test_same_seed_is_byte_identical_and_other_seed_differs(built, tmp_path: Path) -> None:
    # Prepare
    out, manifest = built
    # Execute
    again = build_gateway_dataset(tmp_path / "again", GatewayConfig(seed=0))
    other = build_gateway_dataset(tmp_path / "other", GatewayConfig(seed=1))
    # Assert
    assert again["files"] == manifest["files"]
    for rel in manifest["files"]:
        assert (tmp_path / "again" / rel).read_bytes() == (out / rel).read_bytes()
    assert other["files"] != manifest["files"]


def test_cached_path_is_reused(tmp_path: Path) -> None:
    # Prepare
    calls: list[str] = []
    # Execute
    first = gateway_dataset_path(
        GatewayConfig(seed=0), cache_dir=tmp_path, progress=lambda d, i, n: calls.append(d)
    )
    built_calls = len(calls)
    second = gateway_dataset_path(
        GatewayConfig(seed=0), cache_dir=tmp_path, progress=lambda d, i, n: calls.append(d)
    )
    # Assert
    assert first == second
    assert built_calls >= 25
    assert len(calls) == built_calls


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(min_packets=10, max_benign_packets=5)
