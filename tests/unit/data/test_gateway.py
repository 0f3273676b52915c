import json
from pathlib import Path

import numpy as np
import pytest

from fediot.data.gateway import LAB_ATTACKS, GatewayConfig, build_gateway_dataset, gateway_dataset_path
from fediot.data.nbaiot import read_nbaiot
from fediot.errors import ConfigError
from fediot.features.pcap import read_pcap

REPO = Path(__file__).resolve().parents[3]
# a small build (500 benign packets per device) for the tests that build several times
SMALL = {"max_benign_packets": 500}
WEIGHT, MEAN = 0, 1  # MI_dir_L5_weight / _mean: the (source MAC, source IP) stream


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gw") / "gateway"
    return out, build_gateway_dataset(out, GatewayConfig(seed=0, version=2))


@pytest.mark.slow
def test_v2_has_25_plus_clients_each_with_benign_and_every_attack_type(built) -> None:
    # Prepare
    out, manifest = built
    # Execute
    devices = read_nbaiot(out)
    # Assert
    expected = {"ddos.syn_flood", "ddos.udp_flood", *LAB_ATTACKS}
    assert len(expected) >= 25
    assert len(devices) >= 25
    assert set(devices) == set(manifest["devices"])
    for name, dev in devices.items():
        assert set(dev.attacks) == expected, name
        assert dev.benign.shape[0] == manifest["devices"][name]["rows"]["benign"] >= 500
        for key, rows in dev.attacks.items():
            assert rows.shape[0] == manifest["devices"][name]["rows"][key] >= 1, (name, key)
        assert np.isfinite(dev.benign).all()


@pytest.mark.slow
def test_v2_block_sizes_follow_the_rule(built) -> None:
    # Prepare: a device with 4000 benign packets: min(len(capture), max(100, 0.05 * 4000)) = <= 200 each
    _, manifest = built
    rows = manifest["devices"]["D-LinkSiren"]["rows"]
    lengths = {key: len(read_pcap(REPO / "data" / "lab" / f"{key}.pcap.gz")[0]) for key in LAB_ATTACKS}
    # Execute / Assert
    assert rows["benign"] == 4000
    assert rows["ddos.syn_flood"] == rows["ddos.udp_flood"] == 200
    for key in LAB_ATTACKS:
        assert rows[key] == min(lengths[key], 200), key


def test_manifest_records_sources_and_file_hashes(built) -> None:
    # Prepare
    out, manifest = built
    # Execute
    on_disk = json.loads((out / "manifest.json").read_text())
    # Assert
    assert on_disk["files"] == manifest["files"]
    assert on_disk["version"] == 2
    assert len(on_disk["files"]) == (1 + 2 + len(LAB_ATTACKS)) * len(on_disk["devices"])
    assert set(on_disk["sources"]) == {
        "iot_sentinel/captures_IoT-Sentinel.tar.gz",
        "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz",
        "ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz",
        *(f"lab/{key}.pcap.gz" for key in LAB_ATTACKS),
    }
    assert all(n < 500 for n in on_disk["devices_skipped"].values())


def test_replayed_attacks_look_like_the_device_attacking(built) -> None:
    # Prepare
    out, _ = built
    dev = read_nbaiot(out)["D-LinkSiren"]
    benign_rate = np.median(dev.benign[:, WEIGHT])
    # Execute
    udp_rate = np.median(dev.attacks["ddos.udp_flood"][:, WEIGHT])
    syn_new_stream = np.mean(dev.attacks["ddos.syn_flood"][:, WEIGHT] < 1.01)
    lab_syn_rate = np.median(dev.attacks["flood.syn"][:, WEIGHT])
    lab_spoofed_rate = np.median(dev.attacks["flood.syn_spoofed"][:, WEIGHT])
    # Assert: floods sent from the device's own address make its own stream far denser; spoofed floods
    # (StopDDoS: a new source per packet; the lab: 64 sources) spread over other (MAC, IP) streams
    assert udp_rate > 10 * benign_rate
    assert lab_syn_rate > 5 * benign_rate  # a 200-packet block lasts 50 ms: the L5 stream is not saturated
    assert syn_new_stream > 0.9
    assert np.median(dev.attacks["ddos.syn_flood"][:, MEAN]) == 60.0
    assert lab_spoofed_rate < lab_syn_rate / 2


def test_same_seed_is_byte_identical_whatever_the_workers_and_other_seed_differs(tmp_path: Path) -> None:
    # Prepare
    config = GatewayConfig(seed=0, version=2, **SMALL)
    # Execute
    first = build_gateway_dataset(tmp_path / "a", config, workers=2)
    again = build_gateway_dataset(tmp_path / "b", config, workers=1)
    other = build_gateway_dataset(tmp_path / "c", GatewayConfig(seed=1, version=2, **SMALL), workers=2)
    # Assert
    assert again["files"] == first["files"]
    for rel in first["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert other["files"] != first["files"]


def test_v1_stays_buildable_with_its_two_floods(tmp_path: Path) -> None:
    # Prepare
    config = GatewayConfig(seed=0, version=1, **SMALL)
    # Execute
    manifest = build_gateway_dataset(tmp_path / "v1", config)
    devices = read_nbaiot(tmp_path / "v1")
    # Assert: v1's rule, min(len, max(500, 0.5 * 500)) = 500 rows per flood
    assert manifest["version"] == 1
    for name, dev in devices.items():
        assert set(dev.attacks) == {"ddos.syn_flood", "ddos.udp_flood"}, name
        assert dev.attacks["ddos.syn_flood"].shape[0] == 500


def test_cached_path_is_reused_and_named_by_version(tmp_path: Path) -> None:
    # Prepare
    calls: list[str] = []
    config = GatewayConfig(seed=0, version=2, **SMALL)
    # Execute
    first = gateway_dataset_path(config, cache_dir=tmp_path, progress=lambda d, i, n: calls.append(d))
    built_calls = len(calls)
    second = gateway_dataset_path(config, cache_dir=tmp_path, progress=lambda d, i, n: calls.append(d))
    # Assert
    assert first == second
    assert first.name.startswith("gateway-v2-")
    assert built_calls >= 25
    assert len(calls) == built_calls


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(min_packets=10, max_benign_packets=5)
    with pytest.raises(ConfigError, match="version"):
        GatewayConfig(version=3)
    with pytest.raises(ConfigError):
        GatewayConfig(attack_ratio=0.0)
