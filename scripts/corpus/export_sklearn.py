"""Tabular models trained on seeded synthetic data and converted by skl2onnx / onnxmltools.

Run in the sklearn venv: `python export_sklearn.py RECIPE OPSET OUT.onnx`.
"""

from __future__ import annotations

import sys

import numpy as np

CITIES = np.array(["berlin", "lagos", "lima", "osaka", "perth", "quito"])


def _data(n: int = 400, features: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32) * rng.uniform(0.5, 20, features).astype(np.float32)
    w = rng.normal(size=(features, classes))
    y = np.argmax(x / x.std(0) @ w + 0.3 * rng.normal(size=(n, classes)), 1)
    return x, y


def pipeline_logreg(opset: int):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _data()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    return to_onnx(model, x[:1], target_opset={"": opset, "ai.onnx.ml": 3}, options={"zipmap": False})


def mixed_columns_forest(opset: int):
    """A string column one-hot encoded next to scaled numbers (one input per column, as
    skl2onnx converts a DataFrame pipeline); string class labels out."""
    import pandas as pd
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = _data(features=3)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"city": rng.choice(CITIES, size=len(x)), "age": x[:, 0], "income": x[:, 1], "score": x[:, 2]})
    labels = np.array(["bronze", "gold", "silver"])[y]
    pre = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"]), ("num", StandardScaler(), ["age", "income", "score"])])
    model = Pipeline([("pre", pre), ("rf", RandomForestClassifier(n_estimators=12, max_depth=6, random_state=0))])
    model.fit(frame, labels)
    types = [("city", StringTensorType([None, 1]))] + [(c, FloatTensorType([None, 1])) for c in ("age", "income", "score")]
    return convert_sklearn(model, initial_types=types, target_opset={"": opset, "ai.onnx.ml": 3}, options={id(model): {"zipmap": False}})


def knn_scan(opset: int):
    """skl2onnx computes pairwise distances with a Scan loop."""
    from skl2onnx import to_onnx
    from sklearn.neighbors import KNeighborsRegressor

    x, y = _data(n=120, features=4)
    model = KNeighborsRegressor(n_neighbors=3).fit(x, y.astype(np.float32))
    return to_onnx(model, x[:1], target_opset={"": opset, "ai.onnx.ml": 3})


def gbr_trees(opset: int):
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingRegressor

    x, y = _data(features=5)
    target = (x[:, 0] * 0.1 + np.sin(x[:, 1]) + y).astype(np.float32)
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(x, target)
    return to_onnx(model, x[:1], target_opset={"": opset, "ai.onnx.ml": 3})


def lightgbm_classifier(opset: int):
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _data(features=8, classes=4)
    model = lightgbm.LGBMClassifier(n_estimators=25, num_leaves=15, random_state=0, verbose=-1).fit(x, y)
    return convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, 8]))], target_opset=opset, zipmap=False)


def main() -> None:
    name, opset, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    model = globals()[name](opset)
    with open(out, "wb") as f:
        f.write(model.SerializeToString())


if __name__ == "__main__":
    main()
