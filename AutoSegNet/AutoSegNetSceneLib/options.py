"""Choices offered in the module's GUI (kept free of engine imports: ``AutoSegNet.py`` reads them at load)."""

CONFIGURATIONS = ("auto", "2d", "3d_fullres", "3d_lowres")
FOLDS = ("all", "0", "1", "2", "3", "4")
DEVICES = ("auto", "cuda", "cpu", "mps")
AMP_CHOICES = ("auto", "bf16", "off")  # train --amp: auto = float16 on CUDA, float32 elsewhere
ENGINES = ("this computer", "server")  # where jobs run (engines.py)
