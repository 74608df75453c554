#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Third-party licences of what a release binary links, for `make dist`.

    python3 contrib/third_party.py TARGET OUT_DIR

Writes OUT_DIR/THIRD-PARTY.md (one row per crate and C library linked into the binary
built for TARGET: name, version, SPDX expression, where its licence text is) and copies
each one's licence and notice files under OUT_DIR/licenses/NAME-VERSION/. The crates are
cargo tree's for TARGET, normal dependencies only, from btrace down: build scripts' and
proc macros' own crates run at build time and are not linked, so they are left out.
The C libraries are libbpf (vendored by libbpf-sys) and Debian's static libelf, zlib and
glibc, whose Debian copyright files are taken from this system.
"""
import json
import os
import shutil
import subprocess
import sys

LICENCE_PREFIXES = ("license", "licence", "copying", "notice", "unlicense", "copyright")

# (name, SPDX, where the version and licence text come from); Debian's copyright files
# are the same for the arm64 libraries (the same source packages and versions, see
# tests/vm/arm64-sysroot.sh).
DEBIAN_LIBRARIES = [
    ("glibc (libc.a)", "LGPL-2.1-or-later", "libc6-dev"),
    ("elfutils (libelf.a)", "GPL-2.0-or-later OR LGPL-3.0-or-later", "libelf-dev"),
    ("zlib (libz.a)", "Zlib", "zlib1g-dev"),
]


def licence_files(directory):
    """The licence and notice files at the top of a crate's or library's directory."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [
        n
        for n in names
        if n.lower().startswith(LICENCE_PREFIXES) and os.path.isfile(os.path.join(directory, n))
    ]


MIT = """MIT License

{copyright}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def copyright_line(src):
    """The `Copyright` line at the head of a crate's lib.rs, without the comment marker."""
    try:
        with open(os.path.join(src, "src", "lib.rs")) as f:
            for line in f.readlines()[:10]:
                text = line.strip().lstrip("/").strip()
                if text.lower().startswith("copyright"):
                    return text
    except OSError:
        pass
    return None


def linked_crates(target):
    """The crates linked into the binary for `target`: cargo tree's normal dependencies with
    the features the build really resolves, proc macros and what only they use left out;
    their manifests' directories from cargo metadata."""
    tree = subprocess.run(
        ["cargo", "tree", "-e", "normal,no-proc-macro", "--target", target,
         "--prefix", "none", "--format", "{p}"],
        check=True, capture_output=True, text=True,
    ).stdout
    linked = set()
    for line in tree.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] != "btrace":
            linked.add((words[0], words[1].lstrip("v")))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--filter-platform", target],
            check=True, capture_output=True,
        ).stdout
    )
    found = [p for p in meta["packages"] if (p["name"], p["version"]) in linked]
    if len(found) != len(linked):
        missing = linked - {(p["name"], p["version"]) for p in found}
        sys.exit(f"third_party.py: cargo metadata does not know {sorted(missing)}")
    return sorted(found, key=lambda p: (p["name"], p["version"]))


def debian_version(package):
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else "not installed"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    target, out = sys.argv[1], sys.argv[2]
    licenses = os.path.join(out, "licenses")
    os.makedirs(licenses, exist_ok=True)
    rows = []
    missing = []
    libbpf_dir = None
    for pkg in linked_crates(target):
        name = f"{pkg['name']}-{pkg['version']}"
        src = os.path.dirname(pkg["manifest_path"])
        if pkg["name"] == "libbpf-sys":
            libbpf_dir = os.path.join(src, "libbpf")
        files = licence_files(src)
        if files:
            os.makedirs(os.path.join(licenses, name), exist_ok=True)
            for f in files:
                shutil.copy(os.path.join(src, f), os.path.join(licenses, name, f))
            where = ", ".join(f"licenses/{name}/{f}" for f in files)
        elif pkg.get("license") == "MIT" and copyright_line(src):
            # The crate ships no licence file (iced-x86): MIT's text with the copyright
            # line its sources carry.
            os.makedirs(os.path.join(licenses, name), exist_ok=True)
            with open(os.path.join(licenses, name, "LICENSE-MIT"), "w") as f:
                f.write(MIT.format(copyright=copyright_line(src)))
            where = f"licenses/{name}/LICENSE-MIT (MIT's text with the copyright line of its sources)"
        else:
            missing.append(name)
            continue
        rows.append((pkg["name"], pkg["version"], pkg.get("license") or "see files", where))

    if missing:
        # A release must carry every linked crate's licence text: a new crate without a
        # file needs its text added here, by hand, before it ships.
        sys.exit(f"third_party.py: no licence file in {', '.join(missing)}: add their text")
    c_rows = []
    if libbpf_dir is None:
        sys.exit("third_party.py: libbpf-sys is not in the resolve")
    version = "vendored by libbpf-sys"
    os.makedirs(os.path.join(licenses, "libbpf"), exist_ok=True)
    files = licence_files(libbpf_dir)
    for f in files:
        shutil.copy(os.path.join(libbpf_dir, f), os.path.join(licenses, "libbpf", f))
    c_rows.append(("libbpf", version, "LGPL-2.1 OR BSD-2-Clause",
                   ", ".join(f"licenses/libbpf/{f}" for f in files)))
    for name, spdx, deb in DEBIAN_LIBRARIES:
        copyright = f"/usr/share/doc/{deb}/copyright"
        if not os.path.exists(copyright):
            sys.exit(f"third_party.py: {copyright} is missing (`make deps` installs {deb})")
        short = name.split()[0]
        os.makedirs(os.path.join(licenses, short), exist_ok=True)
        shutil.copy(copyright, os.path.join(licenses, short, "copyright"))
        c_rows.append((name, f"Debian {deb} {debian_version(deb)}", spdx,
                       f"licenses/{short}/copyright"))

    with open(os.path.join(out, "THIRD-PARTY.md"), "w") as f:
        f.write(f"# Third-party software in btrace ({target})\n\n")
        f.write(
            "The btrace binary is statically linked: it contains the Rust crates and C "
            "libraries below. Their licence texts are in `licenses/`.\n\n"
            "glibc and elfutils' libelf are LGPL (libelf: GPL-2.0-or-later OR "
            "LGPL-3.0-or-later). To relink btrace with a modified version of either, build "
            "it from its source (Apache-2.0, with the kernel programs under GPL-2.0-only OR "
            "BSD-2-Clause) with `make build-release`, which links Debian's `libc.a` and "
            "`libelf.a`; their sources are Debian's (`apt-get source glibc elfutils`, the "
            "versions below).\n\n"
        )
        f.write("## C libraries\n\n| Library | Version | Licence | Text |\n|---|---|---|---|\n")
        for r in c_rows:
            f.write("| " + " | ".join(r) + " |\n")
        f.write("\n## Rust crates\n\n| Crate | Version | Licence | Text |\n|---|---|---|---|\n")
        for r in rows:
            f.write("| " + " | ".join(r) + " |\n")
    print(f"{out}/THIRD-PARTY.md: {len(rows)} crates, {len(c_rows)} C libraries")


if __name__ == "__main__":
    main()
