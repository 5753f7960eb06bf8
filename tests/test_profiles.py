"""Shipped device-profile catalog: completeness, sources, sanity, and malformed-profile errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from simulator import InputError
from simulator.fleet.profiles import PACKAGE_PROFILES_DIR, DeviceProfile, catalog, load_profile

REQUIRED = {
    "phone-lowend", "phone-midrange", "phone-flagship", "tablet", "rpi4", "rpi5",
    "jetson-orin-nano", "jetson-agx-orin", "laptop-cpu", "laptop-rtx4060", "edge-server-l4",
    "cloud-a100",
}
SECTIONS = ("compute", "memory", "energy", "availability", "dropout")
# Shared medians (bit/s) and RTTs (s) from shared/reference.md section 2: Ofcom Mobile Matters 2023
# (cellular), Ookla Q3 2023 fixed broadband (Wi-Fi), Ookla Nov 2022 latency.
LINK_MEDIANS = {
    "wifi": (84.0e6, 38.0e6, 0.010),
    "4g": (29.5e6, 7.6e6, 0.028),
    "5g": (129.9e6, 14.7e6, 0.028),
    "3g": (5.9e6, 2.0e6, None),
}


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return catalog()


def _flops(profiles: dict[str, DeviceProfile], name: str) -> float:
    return profiles[name].compute.train_flops_per_s


def test_catalog_loads_every_file(profiles: dict[str, DeviceProfile]) -> None:
    files = sorted(PACKAGE_PROFILES_DIR.glob("*.yaml"))
    assert len(files) == len(profiles) >= 12
    for path in files:
        prof = load_profile(path)
        assert prof.name == path.stem, f"{path.name}: name must match the file name"
        assert profiles[prof.name] == prof


def test_required_classes_exist(profiles: dict[str, DeviceProfile]) -> None:
    assert set(profiles) >= REQUIRED, sorted(REQUIRED - set(profiles))


def test_every_section_has_a_source(profiles: dict[str, DeviceProfile]) -> None:
    for name, prof in profiles.items():
        for section in SECTIONS:
            assert getattr(prof, section).source.strip(), f"{name}.{section}.source"
        for i, link in enumerate(prof.network.links):
            assert link.source.strip(), f"{name}.network.links.{i}.source"


def test_effective_flops_ordering(profiles: dict[str, DeviceProfile]) -> None:
    chain = ["cloud-a100", "edge-server-l4", "laptop-rtx4060", "jetson-agx-orin",
             "jetson-orin-nano", "phone-flagship", "phone-midrange", "phone-lowend", "rpi5", "rpi4"]
    values = [_flops(profiles, n) for n in chain]
    assert values == sorted(values, reverse=True), dict(zip(chain, values, strict=True))
    assert len(set(values)) == len(values)
    assert _flops(profiles, "laptop-rtx4060") > _flops(profiles, "laptop-cpu")
    assert _flops(profiles, "laptop-cpu") > _flops(profiles, "rpi5")
    assert _flops(profiles, "laptop-cpu") > _flops(profiles, "phone-midrange")
    # rpi5 ~1.9x rpi4 (shared/reference.md section 1)
    assert 1.7 < _flops(profiles, "rpi5") / _flops(profiles, "rpi4") < 2.1


def test_peaks_are_dense_and_consistent(profiles: dict[str, DeviceProfile]) -> None:
    for name, prof in profiles.items():
        peaks = prof.compute.peak_flops_per_s
        for half in ("fp16", "bf16"):
            if half in peaks and "fp32" in peaks:
                assert peaks[half] >= peaks["fp32"], name
        assert prof.compute.train_efficiency <= 0.5, f"{name}: efficiency above the assumed range"
    # Sparse INT8 TOPS -> dense FP16: /2 (2:4 sparsity) /2 (FP16 at half the INT8 rate).
    assert profiles["jetson-orin-nano"].compute.peak_flops_per_s["fp16"] == pytest.approx(67e12 / 4)
    assert profiles["jetson-agx-orin"].compute.peak_flops_per_s["fp16"] == pytest.approx(170e12 / 4)
    assert profiles["cloud-a100"].compute.peak_flops_per_s["bf16"] == pytest.approx(312e12)


def test_peaks_match_their_primary_sources(profiles: dict[str, DeviceProfile]) -> None:
    """Issue 14: the peaks the review found wrong, recomputed from the sources in each profile."""
    peak = {n: p.compute.peak_flops_per_s for n, p in profiles.items()}
    # Cortex-A72: one 128-bit FMLA per cycle = 4 fp32 lanes x 2 FLOPs; 4 cores at 1.5 GHz.
    assert peak["rpi4"]["fp32"] == pytest.approx(4 * 1.5e9 * 8)
    # Cortex-A76: two 128-bit FMLA pipes = 16 FLOPs per cycle; 4 cores at 2.4 GHz.
    assert peak["rpi5"]["fp32"] == pytest.approx(4 * 2.4e9 * 16)
    # Apple GPUs run F16 at the F32 rate.
    assert peak["phone-flagship"]["fp16"] == peak["phone-flagship"]["fp32"]
    # GeForce Ada tensor FP16 with FP32 accumulate: 128 FLOPs/clock per tensor core (half the
    # FP16-accumulate 256), 96 tensor cores, at the clock where FP32 = 3072 x 2 x f.
    f = peak["laptop-rtx4060"]["fp32"] / (3072 * 2)
    assert peak["laptop-rtx4060"]["fp16"] == pytest.approx(96 * 128 * f, rel=0.01)
    # NVIDIA L4 datasheet: FP32 30.3, BF16 242 sparse = 121 dense.
    assert peak["edge-server-l4"]["fp32"] == pytest.approx(30.3e12)
    assert peak["edge-server-l4"]["bf16"] == pytest.approx(121e12)
    for name, prof in profiles.items():
        assert prof.compute.source.strip(), f"{name}: compute.source is empty"


def test_memory_and_power_by_kind(profiles: dict[str, DeviceProfile]) -> None:
    for name, prof in profiles.items():
        assert 0 < prof.memory.usable_bytes <= prof.memory.memory_bytes
        battery = prof.energy.battery_wh
        if prof.kind in ("phone", "tablet", "laptop"):
            assert battery is not None and battery > 0, f"{name}: battery devices need battery_wh"
            assert prof.availability.pattern == "diurnal", name
        if prof.kind in ("board", "server"):
            assert battery is None, name
            assert prof.availability.pattern == "always", name
    assert max(profiles.values(), key=lambda p: p.memory.usable_bytes).name == "cloud-a100"


def test_link_medians_follow_reference(profiles: dict[str, DeviceProfile]) -> None:
    for name, prof in profiles.items():
        for link in prof.network.links:
            if link.link not in LINK_MEDIANS:
                continue
            down, up, rtt = LINK_MEDIANS[link.link]
            assert link.downlink_bits_per_s_median == pytest.approx(down), (name, link.link)
            assert link.uplink_bits_per_s_median == pytest.approx(up), (name, link.link)
            if rtt is not None:
                assert link.latency_s == pytest.approx(rtt), (name, link.link)


def test_readme_lists_every_class(profiles: dict[str, DeviceProfile]) -> None:
    text = (PACKAGE_PROFILES_DIR / "README.md").read_text(encoding="utf-8")
    for name in profiles:
        assert f"`{name}`" in text, f"device_profiles/README.md does not mention {name}"


# --- malformed profiles ----------------------------------------------------------------------
def _base() -> dict:
    return yaml.safe_load((PACKAGE_PROFILES_DIR / "rpi4.yaml").read_text(encoding="utf-8"))


def _del_compute_source(d: dict) -> None:
    del d["compute"]["source"]


def _blank_dropout_source(d: dict) -> None:
    d["dropout"]["source"] = ""


def _shares(d: dict) -> None:
    d["network"]["links"][0]["share"] = 0.5


def _neg_memory(d: dict) -> None:
    d["memory"]["memory_bytes"] = -4.0e9


def _bad_name(d: dict) -> None:
    d["name"] = "Bad Name"


def _precision(d: dict) -> None:
    d["compute"]["precision"] = "bf16"


def _neg_bandwidth(d: dict) -> None:
    d["network"]["links"][1]["uplink_bits_per_s_median"] = -1


@pytest.mark.parametrize(
    ("mutate", "field", "needle"),
    [
        (_del_compute_source, "compute.source", "required"),
        (_blank_dropout_source, "dropout.source", "at least"),
        (_shares, "network", "shares must sum to 1"),
        (_neg_memory, "memory.memory_bytes", "greater than 0"),
        (_bad_name, "name", "pattern"),
        (_precision, "compute", "no peak_flops_per_s entry"),
        (_neg_bandwidth, "network.links.1.uplink_bits_per_s_median", "greater than 0"),
    ],
)
def test_malformed_profile_names_the_field(
    tmp_path: Path, mutate: Callable[[dict], None], field: str, needle: str
) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert err.value.field == str(path)
    assert field in err.value.message and needle in err.value.message, err.value.message


def test_unparsable_and_non_mapping_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid YAML"):
        load_profile(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(InputError, match="mapping"):
        load_profile(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_profile(tmp_path / "missing.yaml")


def test_duplicate_name_in_extra_dir(tmp_path: Path) -> None:
    doc = _base()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(InputError, match="duplicate profile name 'rpi4'"):
        catalog(tmp_path)
