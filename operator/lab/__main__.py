"""`python -P -m faultline.lab ...`: the `faultline lab` commands without the main CLI."""

from faultline.lab.commands import lab

lab(prog_name="python -m faultline.lab")
