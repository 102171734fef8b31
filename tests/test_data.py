"""deepmd_md.data: system reading and validation, batching, neighbor lists, energy bias."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepmd_md import keys
from deepmd_md.data.batch import (
    FRAME_INDEX,
    SYSTEM_INDEX,
    DataSampler,
    iterate_frames,
    resolve_batch_size,
    resolve_batch_sizes,
    system_probabilities,
)
from deepmd_md.data.neighbor import (
    check_sel,
    count_neighbors,
    extend_coord,
    neighbor_candidates,
    neighbor_stat,
)
from deepmd_md.data.stats import energy_bias
from deepmd_md.data.system import System, find_systems, load_system, remap_types
from deepmd_md.errors import ConfigError, DataError, NeighborError

WATER = Path(__file__).resolve().parents[1] / "examples" / "water" / "data"


def write_system(root: Path, nat=4, nsets=(3,), ntypes=2, type_map=("O", "H"), seed=0, **over):
    """Write a small random deepmd/npy system; `over` replaces arrays: {name: array or None}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    atype = over.pop("atype", np.arange(nat) % ntypes)
    (root / "type.raw").write_text(" ".join(map(str, atype)) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    for i, nf in enumerate(nsets):
        d = root / f"set.{i:03d}"
        d.mkdir()
        arrays = {
            "coord": rng.uniform(0, 5, (nf, nat * 3)),
            "box": np.tile(np.diag([5.0, 5.0, 5.0]).ravel(), (nf, 1)),
            "energy": rng.normal(size=nf),
            "force": rng.normal(size=(nf, nat * 3)),
        }
        for k, v in over.items():  # plain name: first set only; "all_" prefix: every set
            if i == 0 or k.startswith("all_"):
                arrays[k.removeprefix("all_")] = v
        for k, v in arrays.items():
            if v is not None:
                np.save(d / f"{k}.npy", v)
    return root


def to_h5(sys_dir: Path, h5: h5py.Group):
    h5.create_dataset("type.raw", data=np.loadtxt(sys_dir / "type.raw", dtype=int, ndmin=1))
    names = (sys_dir / "type_map.raw").read_text().split()
    h5.create_dataset("type_map.raw", data=np.array(names, dtype="S"))
    for s in sorted(sys_dir.glob("set.*")):
        g = h5.create_group(s.name)
        for f in s.glob("*.npy"):
            g.create_dataset(f.name, data=np.load(f))


# -- systems ----------------------------------------------------------------------------------


def test_load_water():
    s = load_system(WATER / "data_1")
    assert s.type_map == ["O", "H"]
    assert s.coord.shape == (160, 192, 3) and s.force.shape == (160, 192, 3)
    assert s.box.shape == (160, 9) and s.energy.shape == (160,) and s.virial is None
    assert s.atype.dtype == np.int64 and s.coord.dtype == np.float64


def test_hdf5_equals_directory(tmp_path):
    d = write_system(tmp_path / "sys", nsets=(2, 2), all_virial=np.ones((2, 9)))
    fn = tmp_path / "data.h5"
    with h5py.File(fn, "w") as f:
        to_h5(d, f.create_group("a/b"))
        to_h5(d, f.create_group("c"))
    a, b = load_system(d), load_system(f"{fn}#/a/b")
    assert b.type_map == a.type_map
    for k in ("atype", "coord", "box", "energy", "force", "virial"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert find_systems(str(fn)) == [f"{fn}#/a/b", f"{fn}#/c"]
    with pytest.raises(DataError, match="group /x not in"):
        load_system(f"{fn}#/x")


def test_find_systems(tmp_path):
    write_system(tmp_path / "a" / "s1")
    write_system(tmp_path / "b" / "deep" / "s2")
    found = find_systems(str(tmp_path))
    assert [Path(p).name for p in found] == ["s1", "s2"]
    assert find_systems(["x", "y"]) == ["x", "y"]
    assert len(find_systems(str(WATER))) == 4
    with pytest.raises(DataError, match="no system"):
        find_systems(str(tmp_path / "a" / "s1" / "set.000"))


def test_nopbc(tmp_path):
    d = write_system(tmp_path / "s", box=None, all_box=None)
    with pytest.raises(DataError, match="nopbc"):
        load_system(d)
    (d / "nopbc").touch()
    assert load_system(d).box is None


BAD = {
    "missing path": (lambda p: p / "nothing", "not found"),
    "no type.raw": (lambda p: (write_system(p / "s") / "type.raw").unlink() or p / "s", "type.raw"),
    "no set": (lambda p: write_system(p / "s", nsets=()), "no set"),
    "coord vs type.raw": (lambda p: write_system(p / "s", coord=np.zeros((3, 9))), "4 atoms"),
    "box frames": (lambda p: write_system(p / "s", box=np.zeros((2, 9))), "2 frames"),
    "box cols": (lambda p: write_system(p / "s", box=np.zeros((3, 6))), "box.npy: shape"),
    "energy frames": (lambda p: write_system(p / "s", energy=np.zeros(4)), "4 frames"),
    "force shape": (lambda p: write_system(p / "s", force=np.zeros((3, 9))), "force.npy"),
    "virial shape": (lambda p: write_system(p / "s", virial=np.zeros((3, 3))), "virial.npy"),
    "virial in one set": (lambda p: write_system(p / "s", nsets=(3, 2), virial=np.zeros((3, 9))),
                          "not in set.001"),
    "type beyond map": (lambda p: write_system(p / "s", atype=np.array([0, 1, 2, 0])),
                        "type 2 .* names only 2"),
    "negative type": (lambda p: write_system(p / "s", atype=np.array([0, -1, 1, 0])), "negative"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_systems(tmp_path, case):
    make, msg = BAD[case]
    with pytest.raises(DataError, match=msg) as e:
        load_system(make(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["coord", "box", "energy", "force"])
def test_non_finite(tmp_path, name):
    s = load_system(write_system(tmp_path / "ok"))
    arr = {
        "coord": s.coord.reshape(3, -1),
        "box": s.box,
        "energy": s.energy,
        "force": s.force.reshape(3, -1),
    }[name].copy()
    arr[2, ...] = np.nan if name != "box" else np.inf
    with pytest.raises(DataError, match=rf"{name}.npy: NaN or inf in frame 2"):
        load_system(write_system(tmp_path / "bad", **{name: arr}))


def test_remap_types(tmp_path):
    s = load_system(write_system(tmp_path / "s", type_map=("H", "O")))  # atype 0 1 0 1
    r = remap_types(s, ["C", "O", "H"])
    np.testing.assert_array_equal(r.atype, [2, 1, 2, 1])
    with pytest.raises(DataError, match="element 'H' is not in model/type_map"):
        remap_types(s, ["O", "C"])
    raw = load_system(write_system(tmp_path / "r", type_map=None, ntypes=3))
    assert remap_types(raw, ["A", "B", "C"]) is raw
    with pytest.raises(DataError, match="type.raw uses type 2"):
        remap_types(raw, ["A", "B"])


# -- batches ----------------------------------------------------------------------------------


def test_batch_sizes():
    assert resolve_batch_size(4, 192) == 4
    assert resolve_batch_size("auto", 192) == 1
    assert resolve_batch_size("auto", 5) == 7  # 7 * 5 >= 32
    assert resolve_batch_size("auto:100", 30) == 4
    assert resolve_batch_size("auto:30", 30) == 1
    assert resolve_batch_sizes([2, "auto:10"], [3, 3]) == [2, 4]
    for bad in (0, "auto:x", "big", 1.5, True):
        with pytest.raises(ConfigError, match="batch_size"):
            resolve_batch_size(bad, 3)
    with pytest.raises(ConfigError, match="2 entries for 3 systems"):
        resolve_batch_sizes([1, 2], [3, 3, 3])


def test_system_probabilities():
    np.testing.assert_allclose(system_probabilities([80, 160], [1, 1]), [1 / 3, 2 / 3])
    np.testing.assert_allclose(
        system_probabilities([80, 160], [1, 1], auto_prob="prob_uniform"), [0.5, 0.5]
    )
    np.testing.assert_allclose(system_probabilities([8, 8], [1, 1], sys_probs=[1, 3]), [0.25, 0.75])
    p = system_probabilities([10, 30, 10], [1, 1, 1], auto_prob="prob_sys_size;0:1:0.5;1:3:0.5")
    np.testing.assert_allclose(p, [0.5, 0.375, 0.125])
    with pytest.raises(ConfigError, match="auto_prob"):
        system_probabilities([1], [1], auto_prob="prob_foo")


def _systems():
    return [load_system(WATER / f"data_{i}") for i in range(3)]


def test_sampler_reproducible():
    """The generator state plus the sampler's (JSON) epoch state reproduce the batches."""
    sampler = DataSampler(_systems(), batch_size=3)
    rng = np.random.default_rng(7)
    for _ in range(4):
        sampler.sample(rng)  # mid-epoch
    state, sampler_state = rng.bit_generator.state, json.loads(json.dumps(sampler.state()))
    first = [sampler.sample(rng) for _ in range(5)]
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = state
    sampler2 = DataSampler(_systems(), batch_size=3)
    sampler2.load_state(sampler_state)
    again = [sampler2.sample(rng2) for _ in range(5)]
    for a, b in zip(first, again, strict=True):
        assert a[SYSTEM_INDEX][0] == b[SYSTEM_INDEX][0]
        np.testing.assert_array_equal(a[keys.COORD], b[keys.COORD])
    b = first[0]
    assert len(set(b[FRAME_INDEX].tolist())) == 3  # without replacement
    assert b[keys.COORD].shape == (3, 192, 3) and b[keys.ATYPE].shape == (3, 192)
    assert b[keys.BOX].shape == (3, 9) and b[keys.LABEL_ENERGY].shape == (3,)
    assert b[keys.LABEL_VIRIAL].shape == (3, 9) and b[keys.FIND_VIRIAL] == 0.0
    s = sampler.systems[b[SYSTEM_INDEX][0]]
    np.testing.assert_array_equal(b[keys.LABEL_FORCE], s.force[b[FRAME_INDEX]])


def test_sampler_walks_shuffled_epochs():
    """Every frame once per epoch, a new order each epoch (DeePMD-kit's sampling)."""
    sampler = DataSampler([load_system(WATER / "data_3")], batch_size=8)  # 80 frames
    rng = np.random.default_rng(3)
    epochs = [np.concatenate([sampler.sample(rng)[FRAME_INDEX] for _ in range(10)])
              for _ in range(2)]
    for e in epochs:
        np.testing.assert_array_equal(np.sort(e), np.arange(80))
    assert not np.array_equal(epochs[0], epochs[1])


def test_iterate_frames():
    s = load_system(WATER / "data_3")
    batches = list(iterate_frames(s, 30))
    assert [len(b[FRAME_INDEX]) for b in batches] == [30, 30, 20]
    np.testing.assert_array_equal(np.concatenate([b[FRAME_INDEX] for b in batches]), np.arange(80))


# -- neighbors --------------------------------------------------------------------------------


def brute_force(coord, box, rcut, reach=9):
    """Per local atom: sorted distances to all images (n in [-reach, reach]^3) within rcut."""
    grid = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    images = coord[None] + (grid @ box.reshape(3, 3))[:, None]  # [nimg, nat, 3]
    out = []
    for i in range(coord.shape[0]):
        d = np.linalg.norm(images - coord[i], axis=-1)
        d[np.all(grid == 0, axis=1), i] = np.inf  # not itself
        out.append(np.sort(d[d < rcut]))
    return out


@pytest.mark.parametrize("unwrapped", [False, True])
def test_neighbors_triclinic_small_cell(unwrapped):
    rng = np.random.default_rng(3)
    cell = np.array([[2.0, 0.0, 0.0], [0.7, 2.2, 0.0], [-0.5, 0.4, 2.5]])  # faces < rcut
    nat, nf, rcut = 5, 2, 3.1
    frac = rng.uniform(0, 1, (nf, nat, 3)) + (rng.integers(-2, 3, (nf, nat, 3)) if unwrapped else 0)
    coord = frac @ cell
    box = np.tile(cell.ravel(), (nf, 1))
    atype = np.tile(np.arange(nat) % 2, (nf, 1))
    ext, ext_at, mapping, shift = extend_coord(coord, atype, box, rcut)
    np.testing.assert_array_equal(ext[:, :nat], coord)  # local atoms unchanged
    np.testing.assert_allclose(ext, np.take_along_axis(coord, mapping[..., None], 1) + shift)
    lat = shift @ np.linalg.inv(cell)
    np.testing.assert_allclose(lat, np.round(lat), atol=1e-9)
    np.testing.assert_array_equal(ext_at, np.take_along_axis(atype, mapping, 1))
    nlist, dist = neighbor_candidates(ext, nat, rcut, return_dist=True)
    for f in range(nf):
        ref = brute_force(coord[f], box[f], rcut)
        for i in range(nat):
            got = nlist[f, i][nlist[f, i] >= 0]
            d = np.linalg.norm(ext[f, got] - coord[f, i], axis=1)
            np.testing.assert_allclose(d, ref[i], atol=1e-12)  # same set, nearest first
            np.testing.assert_allclose(dist[f, i, : len(got)], d, atol=1e-12)
            assert i not in got


def test_neighbors_nopbc():
    coord = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1.5, 0]]])
    ext, ext_at, mapping, shift = extend_coord(coord, np.zeros((1, 3), int), None, 2.0)
    assert ext.shape == (1, 3, 3) and not shift.any()
    nlist = neighbor_candidates(ext, 3, 2.0)
    np.testing.assert_array_equal(nlist, [[[1, 2], [0, 2], [0, 1]]])


def test_count_and_check_sel():
    s = load_system(WATER / "data_0")
    ext, ext_at, _, _ = extend_coord(s.coord[:2], np.tile(s.atype, (2, 1)), s.box[:2], 6.0)
    nlist = neighbor_candidates(ext, s.natoms, 6.0)
    counts = count_neighbors(ext_at, nlist, 2)
    np.testing.assert_array_equal(counts.sum(-1), (nlist >= 0).sum(-1))
    check_sel(counts, [46, 92], ["O", "H"], 6.0)
    msg = r"of type H within rcut 6 \(sel = \[46, 20\]\); set model/descriptor/sel to at least"
    with pytest.raises(NeighborError, match=msg + r" \[46, \d+\]"):
        check_sel(counts, [46, 20], ["O", "H"], 6.0)


def test_neighbor_stat_small(tmp_path):
    coord = np.array([[0.0, 0, 0, 1, 0, 0, 0, 1.5, 0]])
    d = write_system(tmp_path / "s", nat=3, nsets=(1,), coord=coord, box=None, atype=[0, 1, 1])
    (d / "nopbc").touch()
    min_dist, max_nbor = neighbor_stat([str(d)], 1.6, ["O", "H"])
    assert min_dist == pytest.approx(1.0)
    np.testing.assert_array_equal(max_nbor, [1, 2])


# -- statistics -------------------------------------------------------------------------------


def _fake(atype, energy):
    nf, nat = len(energy), len(atype)
    return System("x", None, np.array(atype), np.zeros((nf, nat, 3)), None, np.array(energy))


def test_energy_bias():
    e = np.array([-3.0, -1.5])  # per-type energies
    s1 = _fake([0, 1, 1], [e[0] + 2 * e[1]] * 2)
    s2 = _fake([0, 0, 1], [2 * e[0] + e[1]])
    np.testing.assert_allclose(energy_bias([s1, s2], 3), [-3.0, -1.5, 0.0])  # type 2 absent
    # rank deficient (fixed 1:2 ratio): minimum-norm solution, proportional to the counts
    b = energy_bias([s1], 2)
    np.testing.assert_allclose(b, (e[0] + 2 * e[1]) * np.array([1, 2]) / 5)
    with pytest.raises(DataError, match="energy"):
        energy_bias([System("x", None, np.array([0]), np.zeros((1, 1, 3)), None)], 1)
