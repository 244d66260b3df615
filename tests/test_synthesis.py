"""generate / style-mix / interpolate / provenance on a tiny StyleGAN2 checkpoint (CPU)."""

import hashlib

import numpy as np
import pytest
import torch
from helpers.synth_utils import make_checkpoint
from PIL import Image

from lightning_gans.commands.generate import main as generate_main
from lightning_gans.commands.interpolate import main as interpolate_main
from lightning_gans.commands.provenance import main as provenance_main
from lightning_gans.commands.style_mix import main as stylemix_main
from lightning_gans.errors import CheckpointError, LGError
from lightning_gans.model_file import describe
from lightning_gans.synthesis.common import load_latent, parse_int_list, save_latent, seeds_to_ws
from lightning_gans.synthesis.generate import generate
from lightning_gans.synthesis.interpolate import interpolate, slerp
from lightning_gans.synthesis.stylemix import style_mix
from lightning_gans.synthesis.video import file_provenance

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def gen(ckpt):
    return describe(ckpt).generator()


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_provenance(path, ckpt, **expect):
    meta = file_provenance(path)
    assert meta.get("synthetic") == "true", (path, meta)
    assert meta["checkpoint_sha256"] == sha(ckpt)
    assert meta["model_kind"] == "stylegan2" and meta["model_name"] == "tiny"
    for k in ("tool_version", "time", "network"):
        assert meta[k]
    for k, v in expect.items():
        assert meta[k] == str(v), (path, k, meta[k])
    return meta


def test_load_picks_network(ckpt, gen):
    G = describe(ckpt).generator("G").G
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    torch.testing.assert_close(gen.G.mapping.w_avg, state["G_ema.mapping.w_avg"])
    torch.testing.assert_close(G.mapping.w_avg, state["G.mapping.w_avg"])
    assert not torch.equal(gen.G.mapping.w_avg, G.mapping.w_avg)


def test_seeds_same_and_different(gen):
    imgs = generate(gen, [3, 5, 3], noise_mode="const")
    assert imgs.shape == (3, 3, 32, 32) and imgs.dtype == torch.float32
    assert torch.equal(imgs[0], imgs[2])
    assert (imgs[0] - imgs[1]).abs().mean() > 0.05
    # seed s means z = RandomState(s).randn(z_dim), as the official scripts
    z = torch.from_numpy(np.random.RandomState(5).randn(1, 128)).float()
    torch.testing.assert_close(seeds_to_ws(gen.G, [5]), gen.G.mapping(z, None, update_w_avg=False))
    a, b = generate(gen, [3, 3], noise_mode="random")
    assert (a - b).abs().max() > 1e-3  # random noise differs per image; const above does not
    torch.testing.assert_close(generate(gen, [3], noise_mode="none"), generate(gen, [3], noise_mode="none"))


def test_truncation_zero_is_the_mean_image(gen):
    imgs = generate(gen, [0, 1, 2, 99], truncation_psi=0.0)
    w_avg = gen.G.mapping.w_avg.view(1, 1, -1).expand(1, gen.G.num_ws, -1)
    with torch.no_grad():
        mean_img = gen.G.synthesis(w_avg, noise_mode="const")
    for img in imgs:
        torch.testing.assert_close(img, mean_img[0])
    half = generate(gen, [0], truncation_psi=0.5)
    assert (half - mean_img).abs().mean() > 1e-3


def test_generate_cli_files_and_provenance(ckpt, gen, tmp_path, capsys):
    out = tmp_path / "gen"
    raw = tmp_path / "raw.npy"
    assert generate_main([str(ckpt), "--seeds", "4-6", "--truncation", "0.7", "--grid", "--outdir", str(out),
                              "--raw", str(raw), "--batch", "2"]) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["grid.png", "seed0004.png", "seed0005.png", "seed0006.png"]
    for f in files:
        check_provenance(f, ckpt, truncation_psi=0.7, noise_mode="const", command="generate")
    assert file_provenance(out / "seed0005.png")["seed"] == "5"
    assert Image.open(out / "grid.png").size == (64, 64)  # 3 images -> 2 x 2 grid
    expect = generate(gen, [4, 5, 6], truncation_psi=0.7, batch=2)  # same batches: bit-exact
    np.testing.assert_array_equal(np.load(raw), expect.numpy())
    check_provenance(raw, ckpt, seeds="4-6")
    png = np.asarray(Image.open(out / "seed0006.png"))
    assert np.abs(png.astype(int) - ((expect[2].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).int().numpy())).max() <= 1


def test_latent_file_feeds_generate(ckpt, gen, tmp_path):
    ws = seeds_to_ws(gen.G, [11, 12], truncation_psi=0.6)
    path = save_latent(tmp_path / "w.npz", ws, note="test")
    torch.testing.assert_close(load_latent(path, gen.G), ws)
    out = tmp_path / "out"
    assert generate_main([str(ckpt), "--latent", str(path), "--outdir", str(out)]) == 0
    png = np.asarray(Image.open(out / "latent0001.png"))
    ref = np.asarray(Image.open(_gen_png(ckpt, tmp_path, "12", "0.6")))
    np.testing.assert_array_equal(png, ref)
    check_provenance(out / "latent0001.png", ckpt, latent_file="w.npz")


def _gen_png(ckpt, tmp_path, seed, psi):
    generate_main([str(ckpt), "--seeds", seed, "--truncation", psi, "--outdir", str(tmp_path / "ref")])
    return tmp_path / "ref" / f"seed{int(seed):04d}.png"


def test_style_mix_takes_listed_styles_from_columns(gen, ckpt, tmp_path):
    rows, cols = [85, 100], [55, 821, 3]
    row_ws, col_ws = seeds_to_ws(gen.G, rows), seeds_to_ws(gen.G, cols)
    fine = style_mix(gen, rows, cols, styles=list(range(4, gen.G.num_ws)))  # rows keep coarse styles 0-3
    coarse = style_mix(gen, rows, cols, styles=[0, 1, 2, 3])                 # columns give coarse styles
    for r in range(2):
        for c in range(3):
            assert torch.equal(fine.mixed_ws[r, c, :4], row_ws[r, :4])
            assert torch.equal(fine.mixed_ws[r, c, 4:], col_ws[c, 4:])
            assert torch.equal(coarse.mixed_ws[r, c, :4], col_ws[c, :4])
            assert torch.equal(coarse.mixed_ws[r, c, 4:], row_ws[r, 4:])
    torch.testing.assert_close(coarse.row_images, generate(gen, rows))
    every = style_mix(gen, rows, cols, styles=list(range(gen.G.num_ws)))  # all styles: the column's image
    torch.testing.assert_close(every.mixed[1], generate(gen, cols))
    assert (coarse.mixed[0, 0] - coarse.row_images[0]).abs().mean() > 1e-3
    out = tmp_path / "mix"
    assert stylemix_main([str(ckpt), "--rows", "85,100", "--cols", "55,821,3", "--styles", "0-3",
                              "--outdir", str(out)]) == 0
    grid = out / "stylemix-grid.png"
    assert Image.open(grid).size == (4 * 32, 3 * 32)
    check_provenance(grid, ckpt, styles="0-3", rows="85,100", cols="55,821,3")
    with pytest.raises(LGError, match="out of range"):
        style_mix(gen, rows, cols, styles=[gen.G.num_ws])


@pytest.mark.parametrize("space", ["w", "z"])
def test_interpolation_endpoints_and_count(gen, space):
    imgs, ws = interpolate(gen, [1, 2, 3], frames=4, space=space, truncation_psi=0.8)
    assert imgs.shape[0] == ws.shape[0] == 2 * 4 + 1
    keys = generate(gen, [1, 2, 3], truncation_psi=0.8)
    torch.testing.assert_close(imgs[0], keys[0])
    torch.testing.assert_close(imgs[4], keys[1])
    torch.testing.assert_close(imgs[-1], keys[2])
    assert (imgs[1] - imgs[0]).abs().mean() > 1e-4 and (imgs[1] - imgs[4]).abs().mean() > 1e-4


def test_slerp_stays_on_the_sphere():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    out = slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(out[1], torch.tensor([0.5**0.5, 0.5**0.5]))
    torch.testing.assert_close(out[2], b)


def test_interpolate_cli_frames_video_provenance(ckpt, tmp_path):
    out = tmp_path / "interp"
    assert interpolate_main([str(ckpt), "--seeds", "1,2", "--frames", "3", "--space", "z", "--format", "gif",
                                 "--outdir", str(out)]) == 0
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 4
    for i, f in enumerate(frames):
        check_provenance(f, ckpt, space="z", frame=i, seeds="1,2")
    gif = out / "interpolation.gif"
    with Image.open(gif) as im:
        assert im.n_frames == 4
    check_provenance(gif, ckpt, num_frames=4, command="interpolate")


def test_provenance_cli(ckpt, tmp_path, capsys):
    generate_main([str(ckpt), "--seeds", "0", "--outdir", str(tmp_path)])
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    capsys.readouterr()
    assert provenance_main([str(tmp_path / "seed0000.png")]) == 0
    assert sha(ckpt) in capsys.readouterr().out
    assert provenance_main([str(tmp_path / "seed0000.png"), str(plain)]) == 1
    assert "plain.png: NO provenance metadata" in capsys.readouterr().out
    with pytest.raises(LGError, match="does not exist"):
        provenance_main([str(tmp_path / "nope.png")])


def test_bad_inputs(ckpt, tmp_path):
    wrong = make_checkpoint(tmp_path / "stargan.ckpt", kind="stargan_v2")
    with pytest.raises(CheckpointError, match=r"holds a 'stargan_v2' model .*this command takes a stylegan2 or"):
        generate_main([str(wrong), "--seeds", "0", "--outdir", str(tmp_path / "o")])
    with pytest.raises(LGError, match=r"'5-1' runs backwards; write it as '1-5'"):
        generate_main([str(ckpt), "--seeds", "5-1", "--outdir", str(tmp_path / "o")])
    with pytest.raises(LGError, match="not an integer"):
        parse_int_list("1,x")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(LGError, match="exists and is a file"):
        generate_main([str(ckpt), "--seeds", "0", "--outdir", str(afile)])
    with pytest.raises(LGError, match="exists and is a file"):
        interpolate_main([str(ckpt), "--seeds", "0,1", "--outdir", str(afile)])
    with pytest.raises(CheckpointError, match="does not exist"):
        generate_main([str(tmp_path / "missing.ckpt"), "--seeds", "0"])
    with pytest.raises(LGError, match="unconditional"):
        generate(ckpt, [0], class_idx=1)


def test_every_command_signs_its_outputs(ckpt, tmp_path, monkeypatch):
    from lightning_gans.synthesis import content_credentials as cc

    monkeypatch.setenv("LG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "mix"
    assert stylemix_main([str(ckpt), "--rows", "1,2", "--cols", "3", "--no-watermark", "--outdir", str(out)]) == 0
    r = cc.read(out / "stylemix-grid.png")
    assert r["valid"] and r["assertion"]["checkpoint_sha256"] == sha(ckpt)
    assert r["assertion"]["watermark"] == "none (turned off with --no-watermark)"
    out = tmp_path / "interp"
    assert interpolate_main([str(ckpt), "--seeds", "1,2", "--frames", "2", "--space", "z", "--format", "gif",
                             "--outdir", str(out)]) == 0
    for f in [*sorted((out / "frames").glob("*.png")), out / "interpolation.gif"]:
        r = cc.read(f)
        assert r["valid"] and r["assertion"]["command"] == "interpolate", f
        assert r["assertion"]["watermark"].startswith("none (output below 256 px"), f
    with pytest.raises(LGError, match="go together"):
        generate_main([str(ckpt), "--seeds", "0", "--sign-key", str(ckpt), "--outdir", str(tmp_path / "o")])
    cc.configure()
