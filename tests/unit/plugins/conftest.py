# Copyright (c) 2026, HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ansible_collections.hingecraft.enterprise_db importable for the plugin unit tests.

`make venv` links the collection at .collections/ansible_collections/hingecraft/enterprise_db.
"""

from __future__ import annotations

import os
import sys

_COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '.collections'))
if not os.path.isdir(os.path.join(_COLLECTIONS, 'ansible_collections', 'hingecraft', 'enterprise_db')):
    raise RuntimeError(f'collection link missing under {_COLLECTIONS}: run `make venv`')
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
