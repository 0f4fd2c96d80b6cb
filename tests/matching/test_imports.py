"""The hub imports the index without pdqhash or Pillow installed: the index modules must not load them."""

from __future__ import annotations

import subprocess
import sys


def test_index_modules_do_not_import_pdqhash_or_pillow() -> None:
    code = (
        "import sys\n"
        "import partners.matching.index, partners.matching.matcher\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pdqhash', 'PIL')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
