# SPDX-License-Identifier: Apache-2.0
"""README.md's figure blocks: each bench part writes its figures between its markers."""
import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def write_block(name, block):
    """Replaces README.md's block from `<!-- bench:NAME -->` to `<!-- /bench:NAME -->` with
    `block`, which carries both markers; a README without them is left alone."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    assert block.startswith(start) and block.endswith(end), f"block {name} lacks its markers"
    with open(README) as f:
        text = f.read()
    if start not in text:
        return
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
    with open(README, "w") as f:
        f.write(text)
