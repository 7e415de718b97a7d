"""tfbind_dist: distributed training and batch scoring of TF-binding models.

    import tfbind_dist as tb
    model = tb.load_model("runs/REST")
    tb.predict(model, ["ACGT..."]).probability
    tb.ism(model, sequences).delta                      # (N, L, 4)
    tb.explain(model, sequences, ["ism", "deeplift-shap"]).plot(0)

The public API lives in `tfbind_dist.api` (its docstrings say what each call takes and returns);
its names are importable from here, loaded on first use so that `import tfbind_dist` stays fast.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"


def __getattr__(name: str):
    here = _Path(__file__).parent
    if not name.startswith("_") and not (here / name).is_dir() and not (here / f"{name}.py").exists():
        from tfbind_dist import api  # (submodules are left to the import system)

        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'tfbind_dist' has no attribute {name!r}")


def __dir__():
    from tfbind_dist import api

    return sorted({*(n for n in globals() if not n.startswith("_")), *api.__all__})
