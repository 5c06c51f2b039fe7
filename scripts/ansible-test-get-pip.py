# Offline stand-in for the pip bootstrap script that ansible-test downloads (get-pip.py).
# `make sanity` installs it as ~/.ansible/test/cache/get_pip_<version>.py beside the pip wheel, which
# `pip download` fetched from PyPI; ansible-test runs it to seed pip in its sanity venvs.
import os
import sys

WHEEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-@PIP_VERSION@-py3-none-any.whl")

if not os.path.exists(WHEEL):
    sys.exit("pip wheel missing: %s (run `make sanity`, which downloads it)" % WHEEL)

sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

# get-pip.py's own flags are not pip's; a pinned `pip==X` is served by the local wheel.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}
args = [WHEEL if arg.startswith("pip==") else arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
if WHEEL not in args:
    args.append(WHEEL)
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
