"""The installed Sipp, as each ecosystem's users install it (docs/building.md, "Installing").

One `cmake --install` of the build tree into a temporary prefix, then:
- the prefix has the library (with its SONAME), the header, sipp.pc, the CMake package, the two
  binaries and the private llama.cpp runtime, and nothing in it resolves into the build trees;
- examples/c builds out of tree against it through `find_package(Sipp)` and through pkg-config,
  and both programs run on the tiny chat model after the prefix has been moved elsewhere;
- `pip install ./bindings/python` into a fresh venv (offline, Debian's setuptools) finds it;
- `npm pack` of bindings/node installs into a fresh folder, builds its addon with node-gyp
  against it and runs the quick start;
- the Rust crate links it through pkg-config.
Nothing here reaches a registry: pip runs with --no-index, npm installs a local tarball with no
dependencies, cargo runs --offline.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("SIPP_BUILD_DIR", ROOT / "build"))
MODELS = pathlib.Path(os.environ.get("SIPP_TEST_MODELS_DIR", ROOT.parent / "shared" / "models"))
CHAT_MODEL = MODELS / "tinystories-instruct-3m-soda-chat-Q4_0.gguf"
VERSION = subprocess.run(
    ["sed", "-n", r"s/^#define SIPP_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p",
     str(ROOT / "include" / "sipp.h")], capture_output=True, text=True, check=True).stdout.split()
VERSION = ".".join(VERSION)


def run(cmd, cwd=None, env=None, timeout=600):
    """Runs cmd; on failure the assertion shows what it printed."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("SIPP_") and k not in ("PKG_CONFIG_PATH", "LD_LIBRARY_PATH")}
    e.update(env or {})
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=e, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """The build tree installed into a fresh prefix, then moved: every path inside must be
    relative to it."""
    base = tmp_path_factory.mktemp("install")
    first = base / "first"
    run(["cmake", "--install", BUILD, "--prefix", first])
    moved = base / "prefix"
    first.rename(moved)
    return moved


def libdir(prefix):
    (pc,) = prefix.glob("**/pkgconfig/sipp.pc")
    return pc.parent.parent


def pc_env(prefix):
    return {"PKG_CONFIG_PATH": str(libdir(prefix) / "pkgconfig")}


def test_the_prefix_holds_what_an_app_links(prefix):
    lib = libdir(prefix)
    assert (prefix / "include" / "sipp.h").is_file()
    assert (lib / "cmake" / "Sipp" / "SippConfig.cmake").is_file()
    assert (prefix / "bin" / "sipp").is_file() and (prefix / "bin" / "sipp-gateway").is_file()
    dyn = run(["readelf", "-d", lib / "libsipp.so"])
    assert "Library soname: [libsipp.so.0]" in dyn
    assert (lib / "libsipp.so.0").exists()
    # Only SIPP_API symbols are exported.
    syms = run(["nm", "-D", "--defined-only", lib / "libsipp.so.0"]).split("\n")
    names = [s.split()[-1] for s in syms if s.strip()]
    assert "sipp_version_num" in names
    assert not [n for n in names if not n.startswith("sipp_") and not n.startswith("_")]
    # Every library the installed files load resolves inside the prefix or the system,
    # never into the build trees (the llama.cpp cache, build/).
    for f in [lib / "libsipp.so.0", prefix / "bin" / "sipp", prefix / "bin" / "sipp-gateway"]:
        deps = run(["ldd", f])
        assert "not found" not in deps, deps
        for line in deps.splitlines():
            if "=>" in line and "/" in line.split("=>")[1]:
                path = line.split("=>")[1].split()[0]
                assert path.startswith(str(prefix)) or path.startswith(("/lib", "/usr/lib")), line
    pc = run(["pkg-config", "--modversion", "sipp"], env=pc_env(prefix)).strip()
    assert pc == VERSION


def test_the_installed_cli_runs(prefix):
    out = run([prefix / "bin" / "sipp", "query", "--model", MODELS / "stories260K.gguf",
               "--max-tokens", "8", "--temperature", "0", "Once upon a time"])
    assert out.strip()


def check_title_program(exe):
    out = run([exe, "local", CHAT_MODEL, "A day at the park"], timeout=120)
    assert out.strip(), "the example printed no title"


def test_examples_build_with_find_package(prefix, tmp_path):
    run(["cmake", "-S", ROOT / "examples" / "c", "-B", tmp_path, f"-DCMAKE_PREFIX_PATH={prefix}"])
    run(["cmake", "--build", tmp_path])
    check_title_program(tmp_path / "sipp-example-title")


def test_examples_build_with_pkg_config(prefix, tmp_path):
    env = pc_env(prefix)
    flags = run(["pkg-config", "--cflags", "--libs", "sipp"], env=env).split()
    exe = tmp_path / "title"
    run(["cc", "-std=c11", "-Wall", "-Werror", ROOT / "examples" / "c" / "title.c", *flags,
         f"-Wl,-rpath,{libdir(prefix)}", "-o", exe])
    check_title_program(exe)


def test_python_package_installs_offline(prefix, tmp_path):
    venv = tmp_path / "venv"
    # Debian's setuptools and wheel (python3-setuptools, python3-wheel) build the package offline.
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv])
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    # A copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "bindings" / "python", src, ignore=shutil.ignore_patterns("__pycache__"))
    run([*pip, "install", "--no-index", "--no-build-isolation", src])
    out = run([venv / "bin" / "python", "-c",
               "import sipp, sipp._ffi as f; print(sipp.version()); print(f.lib._name)"],
              cwd=tmp_path, env=pc_env(prefix))
    version, loaded = out.split()
    assert version == VERSION
    assert loaded.startswith(str(libdir(prefix)))
    out = run([venv / "bin" / "python", src / "examples" / "quickstart.py"], cwd=tmp_path,
              env={**pc_env(prefix), "SIPP_MODEL": str(CHAT_MODEL)})
    assert "[local] finish:" in out


def test_node_package_packs_and_installs(prefix, tmp_path):
    if not shutil.which("npm"):
        pytest.fail("npm not found (Debian: nodejs npm)")
    pack = tmp_path / "pack"
    pack.mkdir()
    run(["npm", "pack", "--silent", "--pack-destination", pack, ROOT / "bindings" / "node"])
    (tarball,) = pack.glob("sipp-*.tgz")
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}\n')
    # node-gyp compiles the addon at install; the headers of the running Node are on the
    # machine (Debian's libnode-dev or NodeSource's nodejs), so nothing is downloaded.
    nodedir = "/usr" if pathlib.Path("/usr/include/node/common.gypi").exists() else "/usr/local"
    env = {**pc_env(prefix), "npm_config_nodedir": nodedir, "npm_config_audit": "false",
           "npm_config_fund": "false", "npm_config_offline": "true"}
    run(["npm", "install", "--no-save", tarball], cwd=app, env=env)
    assert (app / "node_modules" / "sipp" / "build" / "Release" / "sipp.node").is_file()
    out = run(["node", "-e", "console.log(require('sipp').version())"], cwd=app, env=env)
    assert out.strip() == VERSION
    out = run(["node", app / "node_modules" / "sipp" / "examples" / "quickstart.js"], cwd=app,
              env={**env, "SIPP_MODEL": str(CHAT_MODEL)})
    assert "[local] finish:" in out


def test_rust_crate_links_through_pkg_config(prefix, tmp_path):
    cargo = shutil.which("cargo") or str(pathlib.Path.home() / ".cargo" / "bin" / "cargo")
    if not pathlib.Path(cargo).exists():
        pytest.fail("cargo not found (rustup)")
    target = tmp_path / "target"
    env = {**pc_env(prefix), "CARGO_TARGET_DIR": str(target)}
    run([cargo, "build", "--offline", "-q", "--example", "quickstart", "--manifest-path",
         ROOT / "bindings" / "rust" / "Cargo.toml"], env=env)
    exe = target / "debug" / "examples" / "quickstart"
    assert str(libdir(prefix)) in run(["readelf", "-d", exe])
    out = run([exe], env={"SIPP_MODEL": str(CHAT_MODEL)})
    assert "[local] finish:" in out
