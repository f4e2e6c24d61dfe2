//! The built-in ML tasks end to end: bundled data → split → preprocess → train → ONNX, served
//! through maas-serving (tract always; ONNX Runtime when `ORT_DYLIB_PATH` loads, required with
//! `MAAS_REQUIRE_ORT=1`), predicting what the Rust model predicts: labels exactly, regression
//! values within 1e-4 relative. Then evaluate, compare, and the errors people will meet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use maas_scheduler::ml::{evaluate_model, run_builtin, MlError, Predictions, TrainedModel};
use serde_json::{json, Value};

mod ml_support;

use ml_support::*;

#[test]
fn linear_regression_on_house_prices_serves_the_same_values() {
    let job = Job::new();
    let (train, test, label) = job.split("house_prices", false);
    let out = check_served(
        &job,
        "train",
        json!({"train": train, "label": label, "algorithm": "linear_regression"}),
        &test,
        &label,
    );
    assert_eq!(out.variables["TASK"], "regression");
    assert!(!out.variables.contains_key("CLASSES"));
    assert_eq!(out.metrics["training_metric"], "r2");
    let r2 = out.metrics["training_score"].as_f64().unwrap();
    assert!(r2 > 0.6 && r2 < 1.0, "r2 {r2}");
}

#[test]
fn ridge_and_lasso_on_house_prices_serve_the_same_values() {
    let job = Job::new();
    let (train, test, label) = job.split("house_prices", false);
    let pre = job.run(
        "pre",
        "preprocess",
        json!({"train": train, "test": test, "label": label, "scale": "standard"}),
    );
    for (algorithm, hyper) in [
        ("ridge", json!({"alpha": "10"})),
        (
            "lasso",
            json!({"alpha": 50, "max_iterations": "2000", "tolerance": 1e-6}),
        ),
    ] {
        for scaled in [false, true] {
            let mut p = json!({"train": train, "label": label, "algorithm": algorithm});
            for (k, v) in hyper.as_object().unwrap() {
                p[k] = v.clone();
            }
            if scaled {
                p["train"] = json!(pre.variables["TRAIN"]);
                p["preprocess"] = json!(pre.variables["PREPROCESS"]);
            }
            let out = check_served(&job, &format!("{algorithm}_{scaled}"), p, &test, &label);
            assert_eq!(out.variables["TASK"], "regression");
            assert_eq!(out.variables["ALGORITHM"], algorithm);
            assert_eq!(out.metrics["training_metric"], "r2");
            let r2 = out.metrics["training_score"].as_f64().unwrap();
            assert!(r2 > 0.6 && r2 < 1.0, "{algorithm} scaled {scaled}: r2 {r2}");
        }
    }
}

/// A regressor fitted on `train` with the given hyper-parameters.
fn penalised(job: &Job, train: &str, label: &str, algorithm: &str, hyper: Value) -> TrainedModel {
    let mut p = json!({"train": train, "label": label, "algorithm": algorithm});
    for (k, v) in hyper.as_object().unwrap() {
        p[k] = v.clone();
    }
    TrainedModel::fit(&params(p), &job.dir(&job.folder("fit")))
        .unwrap_or_else(|e| panic!("{algorithm} {hyper}: {e}"))
}

fn close(a: f64, b: f64, relative: f64) -> bool {
    (a - b).abs() <= relative * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn ridge_and_lasso_shrink_from_linear_regression_as_alpha_grows() {
    let job = Job::new();
    let (train, test, label) = job.split("house_prices", false);
    let pre = job.run(
        "pre",
        "preprocess",
        json!({"train": train, "test": test, "label": label, "scale": "standard"}),
    );
    let (_, rows) = features(&test, &label);
    let values = |m: &TrainedModel| match m.predict(&rows).unwrap() {
        Predictions::Values(v) => v,
        other => panic!("{other:?}"),
    };
    let linear = penalised(&job, &train, &label, "linear_regression", json!({}));
    assert_eq!(linear.coefficients().unwrap().0.len(), 11);

    // Ridge with alpha 0 is least squares, the intercept as well.
    for hyper in [
        json!({"alpha": 0}),
        json!({"alpha": 0, "fit_intercept": false}),
    ] {
        let reference = if hyper.get("fit_intercept").is_some() {
            penalised(
                &job,
                &train,
                &label,
                "linear_regression",
                json!({"fit_intercept": false}),
            )
        } else {
            penalised(&job, &train, &label, "linear_regression", json!({}))
        };
        let ridge = penalised(&job, &train, &label, "ridge", hyper.clone());
        let (w, b) = ridge.coefficients().unwrap();
        let (w0, b0) = reference.coefficients().unwrap();
        for (a, e) in w.iter().zip(&w0) {
            assert!(close(*a, *e, 1e-6), "{hyper}: weight {a} vs {e}");
        }
        assert!(close(b, b0, 1e-6), "{hyper}: intercept {b} vs {b0}");
        for (a, e) in values(&ridge).iter().zip(values(&reference)) {
            assert!(close(*a, e, 1e-8), "{hyper}: {a} vs {e}");
        }
    }
    // Lasso with a tiny alpha, on standardised features, converges to it too.
    let scaled = |algorithm: &str, alpha: f64| {
        let mut hyper = json!({"alpha": alpha, "preprocess": pre.variables["PREPROCESS"]});
        if algorithm == "lasso" {
            hyper["tolerance"] = json!(1e-8);
            hyper["max_iterations"] = json!(10000);
        }
        penalised(&job, &pre.variables["TRAIN"], &label, algorithm, hyper)
    };
    let lasso = scaled("lasso", 1e-6);
    for (a, e) in values(&lasso).iter().zip(values(&linear)) {
        assert!(close(*a, e, 1e-4), "lasso: {a} vs {e}");
    }

    // More alpha, smaller coefficients: the L2 norm for ridge, the L1 norm for lasso; the
    // intercept, never penalised, stays the mean price (the standard scaling centers the
    // features).
    let prices = features(&pre.variables["TRAIN"], "lotsize")
        .1
        .chunks(11)
        .map(|row| row[0])
        .collect::<Vec<f64>>();
    let mean_price = prices.iter().sum::<f64>() / prices.len() as f64;
    let l2 = |w: &[f64]| w.iter().map(|v| v * v).sum::<f64>().sqrt();
    let l1 = |w: &[f64]| w.iter().map(|v| v.abs()).sum::<f64>();
    let mut last = (f64::INFINITY, f64::INFINITY);
    for alpha in [0.0, 100.0, 1000.0, 5000.0] {
        let (ridge, b_ridge) = scaled("ridge", alpha).coefficients().unwrap();
        let (lasso, b_lasso) = scaled("lasso", alpha).coefficients().unwrap();
        assert!(
            close(b_ridge, mean_price, 1e-9) && close(b_lasso, mean_price, 1e-9),
            "alpha {alpha}: intercepts {b_ridge} {b_lasso}, mean price {mean_price}"
        );
        let norms = (l2(&ridge), l1(&lasso));
        assert!(
            norms.0 < last.0 && norms.1 < last.1,
            "alpha {alpha}: norms {norms:?} after {last:?}"
        );
        last = norms;
    }
    // A large enough lasso penalty zeroes some coefficients; ridge never does.
    let (sparse, _) = scaled("lasso", 5000.0).coefficients().unwrap();
    let zeros = sparse.iter().filter(|w| **w == 0.0).count();
    assert!(zeros > 0 && zeros < sparse.len(), "{sparse:?}");
    let (dense, _) = scaled("ridge", 5000.0).coefficients().unwrap();
    assert!(dense.iter().all(|w| *w != 0.0), "{dense:?}");
    // An overwhelming one leaves the mean.
    let (nothing, intercept) = scaled("lasso", 1e9).coefficients().unwrap();
    assert!(nothing.iter().all(|w| *w == 0.0), "{nothing:?}");
    assert!(close(intercept, mean_price, 1e-9), "{intercept}");
}

#[test]
fn ridge_and_lasso_refuse_what_they_do_not_take() {
    let job = Job::new();
    let (train, _, label) = job.split("house_prices", false);
    let err = job.fail(
        "a",
        "train",
        json!({"train": train, "label": label, "algorithm": "ridge", "max_iterations": 10}),
    );
    assert!(
        err.contains("'max_iterations'") && err.contains("ridge"),
        "{err}"
    );
    let err = job.fail(
        "b",
        "train",
        json!({"train": train, "label": label, "algorithm": "lasso", "k": 3}),
    );
    assert!(err.contains("'k'") && err.contains("lasso"), "{err}");
    let err = job.fail(
        "c",
        "train",
        json!({"train": train, "label": label, "algorithm": "lasso", "alpha": -1}),
    );
    assert!(
        err.contains("'alpha'") && err.contains("at least 0"),
        "{err}"
    );

    // A duplicated column: no unique least-squares answer, but any alpha > 0 has one, which
    // splits the weight evenly between the copies: each gets Sxy / (2 Sxx + alpha).
    let dir = job.folder("dup");
    let dup = dir.join("train.csv");
    std::fs::write(
        &dup,
        "x,x2,c,y\n0,0,5,1\n1,1,5,3.1\n2,2,5,4.9\n3,3,5,7\n4,4,5,9.2\n",
    )
    .unwrap();
    let err = job.fail(
        "d",
        "train",
        json!({"train": dup, "label": "y", "algorithm": "ridge", "alpha": 0}),
    );
    assert!(err.contains("collinear") && err.contains("alpha"), "{err}");
    let ridge = TrainedModel::fit(
        &params(json!({"train": dup, "label": "y", "algorithm": "ridge", "alpha": 0.5})),
        &job.dir(&dir),
    )
    .unwrap();
    let (w, b) = ridge.coefficients().unwrap();
    // Sxy = 20.3, Sxx = 10, mean x 2, mean y 5.04; the constant column c gets nothing.
    let each = 20.3 / 20.5;
    assert!(close(w[0], each, 1e-9) && close(w[1], each, 1e-9), "{w:?}");
    assert_eq!(w[2], 0.0);
    assert!(close(b, 5.04 - 2.0 * each * 2.0, 1e-9), "{b}");
}

#[test]
fn logistic_regression_on_iris_serves_the_same_labels() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", true);
    let out = check_served(
        &job,
        "train",
        json!({"train": train, "label": label, "algorithm": "logistic_regression",
               "max_iterations": "200"}),
        &test,
        &label,
    );
    assert_eq!(
        out.variables["CLASSES"],
        r#"["setosa","versicolor","virginica"]"#
    );
    assert_eq!(out.variables["TASK"], "classification");
    assert_eq!(out.variables["ALGORITHM"], "logistic_regression");
    assert!(out.metrics["training_score"].as_f64().unwrap() > 0.9);
}

#[test]
fn decision_tree_on_iris_serves_the_same_labels() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", false);
    check_served(
        &job,
        "train",
        json!({"train": train, "label": label, "algorithm": "decision_tree"}),
        &test,
        &label,
    );
    check_served(
        &job,
        "stump",
        json!({"train": train, "label": label, "algorithm": "decision_tree", "max_depth": 1,
               "criterion": "entropy"}),
        &test,
        &label,
    );
}

#[test]
fn random_forest_on_iris_serves_the_same_labels() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", false);
    let out = check_served(
        &job,
        "train",
        json!({"train": train, "label": label, "algorithm": "random_forest", "n_trees": 30,
               "max_depth": 5, "seed": 3}),
        &test,
        &label,
    );
    assert!(out.metrics["training_score"].as_f64().unwrap() > 0.9);
}

/// Trees and forests regress when asked to (`task: regression`) or when the label is
/// continuous, export a `variable` graph both engines serve as the Rust model predicts, score
/// with R² on held-out rows, and grow the same forest from the same seed.
#[test]
fn trees_and_forests_regress_on_house_prices() {
    let job = Job::new();
    let (train, test, label) = job.split("house_prices", false);
    let pre = job.run(
        "pre",
        "preprocess",
        json!({"train": train, "test": test, "label": label, "scale": "standard"}),
    );
    for (algorithm, hyper) in [
        ("decision_tree", json!({"max_depth": 4})),
        ("random_forest", json!({"n_trees": 40, "seed": 3})),
    ] {
        for scaled in [false, true] {
            let mut p = json!({"train": train, "label": label, "algorithm": algorithm,
                               "task": "regression"});
            for (k, v) in hyper.as_object().unwrap() {
                p[k] = v.clone();
            }
            if scaled {
                p["train"] = json!(pre.variables["TRAIN"]);
                p["preprocess"] = json!(pre.variables["PREPROCESS"]);
            }
            let task = format!("{algorithm}_{scaled}");
            let out = check_served(&job, &task, p.clone(), &test, &label);
            assert_eq!(out.variables["TASK"], "regression");
            assert!(!out.variables.contains_key("CLASSES"));
            assert_eq!(out.metrics["training_metric"], "r2");
            assert!(out.metrics.get("classes").is_none());
            let again = TrainedModel::fit(&params(p), &job.dir(&job.folder("again"))).unwrap();
            let written = std::fs::read(&out.variables["MODEL"]).unwrap();
            assert!(
                again.to_onnx().unwrap() == written,
                "{task}: a regression tree or forest is a function of its data and seed"
            );
            let evaluated = job.run(
                &format!("evaluate_{task}"),
                "evaluate",
                json!({"model": out.variables["MODEL"], "test": test, "label": label}),
            );
            assert_eq!(evaluated.variables["METRIC"], "rmse");
            let r2 = evaluated.metrics["r2"].as_f64().unwrap();
            assert!(r2 > 0.3, "{task}: held-out r2 {r2}");
        }
    }

    // The price is a whole number with hundreds of values: taken for classes, it is refused,
    // with the fix.
    for algorithm in ["random_forest", "decision_tree"] {
        let err = job.fail(
            "classes",
            "train",
            json!({"train": train, "label": label, "algorithm": algorithm}),
        );
        assert!(
            err.contains("the label column 'price' holds")
                && err.contains(
                    "distinct numbers, too many to be the classes of a classifier (at most 50)"
                )
                && err.contains(&format!(
                    "add `task: regression` to the {algorithm} task's params"
                )),
            "{err}"
        );
        let err = job.fail(
            "classes",
            "train",
            json!({"train": train, "label": label, "algorithm": algorithm,
                   "task": "classification"}),
        );
        assert!(err.contains("too many to be the classes"), "{err}");
    }
    let err = job.fail(
        "classes",
        "train",
        json!({"train": train, "label": label, "algorithm": "logistic_regression"}),
    );
    assert!(
        err.contains("train a regressor (linear_regression"),
        "{err}"
    );
    let err = job.fail(
        "criterion",
        "train",
        json!({"train": train, "label": label, "algorithm": "decision_tree",
               "task": "regression", "criterion": "gini"}),
    );
    assert!(err.contains("'gini' is not one of squared_error"), "{err}");
    let err = job.fail(
        "task",
        "train",
        json!({"train": train, "label": label, "algorithm": "decision_tree", "task": "regresion"}),
    );
    assert!(
        err.contains("'regresion' is not one of classification, regression"),
        "{err}"
    );

    // A label with fractions is a quantity: regression without being told.
    let dir = job.folder("continuous");
    let csv = dir.join("continuous.csv");
    let mut text = String::from("x,z,y\n");
    for i in 0..60 {
        let x = f64::from(i) / 4.0;
        text.push_str(&format!("{x},{},{}\n", i % 7, 0.5 * x + 0.25));
    }
    std::fs::write(&csv, text).unwrap();
    let out = job.run(
        "continuous",
        "train",
        json!({"train": csv, "label": "y", "algorithm": "decision_tree"}),
    );
    assert_eq!(out.variables["TASK"], "regression");
    assert!(out.metrics["training_score"].as_f64().unwrap() > 0.99);
    // Whole numbers with few values stay classes.
    let (iris_train, _, iris_label) = job.split("iris", false);
    let out = job.run(
        "iris_tree",
        "train",
        json!({"train": iris_train, "label": iris_label, "algorithm": "decision_tree"}),
    );
    assert_eq!(out.variables["TASK"], "classification");
}

#[test]
fn gaussian_nb_on_iris_serves_the_same_labels() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", false);
    check_served(
        &job,
        "train",
        json!({"train": train, "label": label, "algorithm": "gaussian_nb"}),
        &test,
        &label,
    );
}

#[test]
fn kmeans_on_iris_serves_the_same_clusters() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", false);
    let out = check_served(
        &job,
        "train",
        json!({"train": train, "label": label, "algorithm": "kmeans", "k": 3, "seed": 1}),
        &test,
        &label,
    );
    assert_eq!(out.variables["TASK"], "clustering");
    assert_eq!(out.metrics["training_metric"], "inertia");
    let eval = job.run(
        "evaluate",
        "evaluate",
        json!({"model": out.variables["MODEL"], "test": test, "label": label,
               "task": "clustering"}),
    );
    assert_eq!(eval.variables["METRIC"], "silhouette");
    let silhouette: f64 = eval.variables["SCORE"].parse().unwrap();
    assert!(
        silhouette > 0.4 && silhouette <= 1.0,
        "silhouette {silhouette}"
    );
    assert!(eval.metrics["inertia"].as_f64().unwrap() > 0.0);
}

#[test]
fn preprocess_scaling_is_baked_into_the_served_model() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", true);
    for (i, scale) in ["standard", "minmax"].into_iter().enumerate() {
        let pre = job.run(
            &format!("pre_{scale}"),
            "preprocess",
            json!({"train": train, "test": test, "label": label, "scale": scale}),
        );
        let transform: Value =
            serde_json::from_str(&std::fs::read_to_string(&pre.variables["PREPROCESS"]).unwrap())
                .unwrap();
        assert_eq!(transform["scale"], scale);
        assert_eq!(transform["features"].as_array().unwrap().len(), 4);
        // The CSVs stay unscaled: they are what the served model takes.
        assert_eq!(
            features(&pre.variables["TEST"], &label),
            features(&test, &label)
        );

        for (j, algorithm) in ["logistic_regression", "kmeans", "decision_tree"]
            .iter()
            .enumerate()
        {
            let out = check_served(
                &job,
                &format!("train_{i}_{j}"),
                json!({"train": pre.variables["TRAIN"], "label": label,
                       "algorithm": algorithm, "preprocess": pre.variables["PREPROCESS"]}),
                &pre.variables["TEST"],
                &label,
            );
            // The scaling matters: kmeans on scaled features finds other centroids.
            if *algorithm == "kmeans" {
                let unscaled = TrainedModel::fit(
                    &params(json!({"train": pre.variables["TRAIN"], "label": label,
                                   "algorithm": "kmeans"})),
                    &job.dir(&job.folder("unscaled")),
                )
                .unwrap();
                assert_ne!(
                    unscaled.to_onnx().unwrap(),
                    std::fs::read(&out.variables["MODEL"]).unwrap()
                );
            }
        }
    }
}

#[test]
fn preprocess_encodes_fills_and_drops_fitted_on_train() {
    let job = Job::new();
    let dir = job.folder("data");
    let train = dir.join("train.csv");
    let test = dir.join("test.csv");
    std::fs::write(
        &train,
        "id,size,color,price\n1,10,red,100\n2,,blue,200\n3,30,red,300\n4,40,green,NA\n5,50,,500\n",
    )
    .unwrap();
    std::fs::write(&test, "id,size,color,price\n6,,purple,600\n7,20,blue,700\n").unwrap();
    let out = job.run(
        "pre",
        "preprocess",
        json!({"train": train, "test": test, "label": "price", "drop": "id",
               "missing": "mean", "encode": ["color"], "scale": "minmax"}),
    );
    // Rows without a label are dropped; the size mean of train (10, 30, 50) is 30.
    assert_eq!(
        std::fs::read_to_string(&out.variables["TRAIN"]).unwrap(),
        "size,color=blue,color=red,price\n10,0,1,100\n30,1,0,200\n30,0,1,300\n50,0,0,500\n"
    );
    // Unknown categories (green only came with a dropped row): all zeros; missing size: the
    // train mean.
    assert_eq!(
        std::fs::read_to_string(&out.variables["TEST"]).unwrap(),
        "size,color=blue,color=red,price\n30,0,0,600\n20,1,0,700\n"
    );
    assert_eq!(out.metrics["train_rows_dropped"], 1);
    let transform: Value =
        serde_json::from_str(&std::fs::read_to_string(&out.variables["PREPROCESS"]).unwrap())
            .unwrap();
    let size = &transform["features"][0];
    assert_eq!(size["fill"], 30.0);
    assert_eq!(
        (size["offset"].as_f64(), size["divisor"].as_f64()),
        (Some(10.0), Some(40.0))
    );
    let red = &transform["features"][2];
    assert_eq!(red["category"], "red");
    assert_eq!(
        (red["offset"].as_f64(), red["divisor"].as_f64()),
        (Some(0.0), Some(1.0))
    );

    // missing=drop (the default) drops every incomplete row instead.
    let out = job.run(
        "pre_drop",
        "preprocess",
        json!({"train": train, "test": test, "label": "price", "drop": ["id"],
               "encode": "color"}),
    );
    assert_eq!(out.metrics["train_rows"], 2);
    assert_eq!(out.metrics["test_rows"], 1);

    // A text column that is neither encoded nor dropped is named.
    let err = job.fail(
        "pre_text",
        "preprocess",
        json!({"train": train, "test": test, "label": "price", "missing": "zero"}),
    );
    assert!(
        err.contains("column 'color'") && err.contains("encode"),
        "{err}"
    );
}

#[test]
fn split_is_deterministic_for_a_seed() {
    let job = Job::new();
    let data = job.run("load", "load_dataset", json!({"name": "iris"}));
    let split = |task: &str, seed: u64, stratify: bool| {
        let out = job.run(
            task,
            "split",
            json!({"data": data.variables["DATA"], "label": "species", "seed": seed,
                   "stratify": stratify}),
        );
        (
            std::fs::read_to_string(&out.variables["TRAIN"]).unwrap(),
            std::fs::read_to_string(&out.variables["TEST"]).unwrap(),
        )
    };
    let a = split("a", 5, false);
    assert_eq!(a, split("b", 5, false));
    assert_ne!(a, split("c", 6, false));
    assert_eq!(a.0.lines().count(), 121);
    assert_eq!(a.1.lines().count(), 31);

    let (_, test) = split("d", 5, true);
    for class in ["setosa", "versicolor", "virginica"] {
        assert_eq!(
            test.lines().filter(|l| l.ends_with(class)).count(),
            10,
            "{class}"
        );
    }
}

#[test]
fn load_csv_reads_files_and_urls() {
    let job = Job::new();
    let dir = job.folder("load");
    std::fs::write(dir.join("in.csv"), "a;b;y;c\n1;2;x;3\n4;5;z;6\n").unwrap();
    let out = job.run(
        "load",
        "load_csv",
        json!({"path": "in.csv", "delimiter": ";", "label": "y", "columns": "c, a"}),
    );
    assert_eq!(
        std::fs::read_to_string(&out.variables["DATA"]).unwrap(),
        "c,a,y\n3,1,x\n6,4,z\n"
    );
    assert_eq!(out.variables["LABEL"], "y");
    assert_eq!(out.metrics["rows"], 2);
    assert!(Path::new(&out.variables["DATA"]).is_absolute());

    // Over http, from a one-shot server on the loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).unwrap();
        let body = "x\ty\n1\ta\n2\tb\n3\ta\n";
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let out = job.run(
        "fetch",
        "load_csv",
        json!({"path": format!("http://127.0.0.1:{port}/data.tsv"), "delimiter": "tab",
               "label": "y"}),
    );
    server.join().unwrap();
    assert_eq!(
        std::fs::read_to_string(&out.variables["DATA"]).unwrap(),
        "x,y\n1,a\n2,b\n3,a\n"
    );
}

#[test]
fn errors_say_what_to_fix() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", false);

    // (task folder, kind, params, what the message must name)
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        (
            "a",
            "train",
            json!({"trian": train, "label": label, "algorithm": "decision_tree"}),
            vec!["unknown parameter 'trian'", "train,"],
        ),
        (
            "b",
            "train",
            json!({"train": train, "label": label, "algorithm": "decision_tree", "k": 3}),
            vec!["'k'", "decision_tree"],
        ),
        (
            "c",
            "train",
            json!({"train": train, "label": "kind", "algorithm": "gaussian_nb"}),
            vec!["no column 'kind'", "5 columns"],
        ),
        (
            "d",
            "train",
            json!({"train": train, "label": label, "algorithm": "svm"}),
            vec!["'svm'", "random_forest"],
        ),
        (
            "e",
            "fit",
            json!({}),
            vec!["'fit'", "load_csv, load_dataset, split"],
        ),
        (
            "f",
            "split",
            json!({"data": train, "label": label, "train_size": "80%"}),
            vec!["'train_size'", "\"80%\""],
        ),
    ];
    for (folder, kind, values, needles) in cases {
        let err = job.fail(folder, kind, values);
        assert!(needles.iter().all(|n| err.contains(n)), "{folder}: {err}");
    }

    // NaN among the features: the file, the line and the column, and what to do.
    let bad = job.folder("nan").join("train.csv");
    let text = std::fs::read_to_string(&train).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<&str> = lines[3].split(',').collect();
    fields[1] = "NaN";
    lines[3] = fields.join(",");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let err = job.fail(
        "g",
        "train",
        json!({"train": bad, "label": label,
                                            "algorithm": "logistic_regression"}),
    );
    assert!(
        err.contains("line 4, column 'sepal_width'") && err.contains("missing=drop"),
        "{err}"
    );

    // A test CSV that is not the model's input format.
    let model = job.run(
        "h",
        "train",
        json!({"train": train, "label": label,
                                             "algorithm": "gaussian_nb"}),
    );
    let dir = job.folder("reordered");
    let reordered = dir.join("test.csv");
    let mut reader = csv::Reader::from_path(&test).unwrap();
    let mut writer = csv::Writer::from_path(&reordered).unwrap();
    let header = reader.headers().unwrap().clone();
    writer
        .write_record([&header[1], &header[0], &header[2], &header[3], &header[4]])
        .unwrap();
    for r in reader.records() {
        let r = r.unwrap();
        writer
            .write_record([&r[1], &r[0], &r[2], &r[3], &r[4]])
            .unwrap();
    }
    writer.flush().unwrap();
    let err = job.fail(
        "i",
        "evaluate",
        json!({"model": model.variables["MODEL"],
                                               "test": reordered, "label": label}),
    );
    assert!(err.contains("not the model's features"), "{err}");

    // The enum carries the details for callers that branch on them.
    let e = run_builtin(
        "split",
        &params(json!({"label": "y"})),
        &job.folder("j"),
        &job.reads,
    )
    .unwrap_err();
    assert!(
        matches!(e, MlError::MissingParam { ref param, .. } if param == "data"),
        "{e}"
    );
}

/// Data where the tree is known: x < 6.5 → a, x < 16.5 → b, else c.
fn tiny_classifier(job: &Job) -> (String, PathBuf) {
    let dir = job.folder("tiny");
    let train = dir.join("train.csv");
    std::fs::write(
        &train,
        "x,y\n0,a\n1,a\n2,a\n3,a\n10,b\n11,b\n12,b\n20,c\n21,c\n22,c\n",
    )
    .unwrap();
    let test = dir.join("test.csv");
    // Predictions: a, a, b, b, c, c against truth a, b, b, b, c, a.
    std::fs::write(&test, "x,y\n0,a\n1,b\n10,b\n11,b\n20,c\n21,a\n").unwrap();
    let out = job.run(
        "tiny_tree",
        "train",
        json!({"train": train, "label": "y",
                                                   "algorithm": "decision_tree"}),
    );
    (out.variables["MODEL"].clone(), test)
}

#[test]
fn evaluate_scores_match_hand_computed_values() {
    let job = Job::new();
    let (model, test) = tiny_classifier(&job);
    let out = job.run(
        "eval",
        "evaluate",
        json!({"model": model, "test": test, "label": "y",
                                                 "task": "classification",
                                                 "classes": r#"["a","b","c"]"#,
                                                 "features": r#"["x"]"#}),
    );
    let close = |name: &str, expected: f64| {
        let got = out.metrics[name].as_f64().unwrap();
        assert!(
            (got - expected).abs() < 1e-12,
            "{name}: {got} != {expected}"
        );
    };
    close("accuracy", 4.0 / 6.0);
    close("precision_macro", (0.5 + 1.0 + 0.5) / 3.0);
    close("recall_macro", (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
    close("f1_macro", (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
    assert_eq!(
        out.metrics["confusion_matrix"],
        json!([[1, 0, 1], [1, 2, 0], [0, 0, 1]])
    );
    assert_eq!(out.metrics["classes"], json!(["a", "b", "c"]));
    assert_eq!(out.variables["METRIC"], "accuracy");
    assert_eq!(out.variables["HIGHER_IS_BETTER"], "true");
    assert_eq!(out.variables["SCORE"].parse::<f64>().unwrap(), 4.0 / 6.0);

    // y = 2x + 1 exactly; the test truth is off by 1, -1, 0, 2.
    let dir = job.folder("line");
    let train = dir.join("train.csv");
    std::fs::write(&train, "x,y\n0,1\n1,3\n2,5\n3,7\n4,9\n").unwrap();
    let test = dir.join("test.csv");
    std::fs::write(&test, "x,y\n0,2\n1,2\n2,5\n3,9\n").unwrap();
    let line = job.run(
        "line",
        "train",
        json!({"train": train, "label": "y",
                                               "algorithm": "linear_regression"}),
    );
    let bytes = std::fs::read(&line.variables["MODEL"]).unwrap();
    let e = evaluate_model(&bytes, &test, "y", "regression", None).unwrap();
    // squared errors 1 + 1 + 0 + 4 = 6; truth mean 4.5, SS_tot 6.25 + 6.25 + 0.25 + 20.25 = 33
    let score = |name: &str| e.metrics[name].as_f64().unwrap();
    assert!(
        (score("rmse") - 1.5f64.sqrt()).abs() < 1e-5,
        "{}",
        score("rmse")
    );
    assert!((score("mae") - 1.0).abs() < 1e-5, "{}", score("mae"));
    assert!(
        (score("r2") - (1.0 - 6.0 / 33.0)).abs() < 1e-5,
        "{}",
        score("r2")
    );
    assert_eq!(e.primary_metric(), "rmse");
    assert_eq!(e.score("rmse").map(|(_, higher)| higher), Some(false));
}

#[test]
fn evaluate_model_scores_a_model_maas_did_not_train() {
    // The fixture classifier (skl2onnx, ai.onnx.ml operators, input `float_input`, labels 0-2)
    // on the data it was trained on.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let bytes = std::fs::read(fixtures.join("iris_logreg.onnx")).unwrap();
    let e = evaluate_model(
        &bytes,
        &fixtures.join("iris_train.csv"),
        "species",
        "classification",
        None,
    )
    .unwrap();
    let accuracy = e.metrics["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - 146.0 / 150.0).abs() < 1e-12,
        "accuracy {accuracy}"
    );
    assert_eq!(e.metrics["classes"], json!(["0", "1", "2"]));
    assert_eq!(e.rows, 150);

    // A CSV with one column too few is refused before anything runs.
    let job = Job::new();
    let narrow = job.folder("narrow").join("test.csv");
    std::fs::write(&narrow, "a,b,c,species\n1,2,3,0\n").unwrap();
    let err = evaluate_model(&bytes, &narrow, "species", "classification", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("takes 4 values per row") && err.contains("3 feature"),
        "{err}"
    );
}

#[test]
fn compare_picks_the_better_model() {
    let job = Job::new();
    let (train, test, label) = job.split("iris", true);
    let stump = job.run(
        "stump",
        "train",
        json!({"train": train, "label": label,
                                                 "algorithm": "decision_tree",
                                                 "max_depth": 1}),
    );
    let nb = job.run(
        "nb",
        "train",
        json!({"train": train, "label": label,
                                           "algorithm": "gaussian_nb"}),
    );
    let models = format!("{},{}", stump.variables["MODEL"], nb.variables["MODEL"]);
    let out = job.run(
        "compare",
        "compare",
        json!({"models": models, "test": test,
                                                   "label": label, "task": "classification"}),
    );
    assert_eq!(out.variables["BEST"], "nb");
    assert_eq!(out.variables["MODEL"], nb.variables["MODEL"]);
    assert_eq!(out.variables["METRIC"], "accuracy");
    let table = out.metrics["models"].as_object().unwrap();
    let stump_accuracy = table["stump"]["accuracy"].as_f64().unwrap();
    let nb_accuracy = table["nb"]["accuracy"].as_f64().unwrap();
    assert!(
        stump_accuracy < 0.7 && nb_accuracy > 0.85,
        "{stump_accuracy} {nb_accuracy}"
    );
    assert_eq!(out.variables["SCORE"].parse::<f64>().unwrap(), nb_accuracy);

    // Lower is better for rmse.
    let (train, test, label) = job.split("house_prices", false);
    let full = job.run(
        "full",
        "train",
        json!({"train": train, "label": label,
                                               "algorithm": "linear_regression"}),
    );
    let origin = job.run(
        "origin",
        "train",
        json!({"train": train, "label": label,
                                                   "algorithm": "linear_regression",
                                                   "fit_intercept": false}),
    );
    let out = job.run(
        "compare_r",
        "compare",
        json!({
        "models": [origin.variables["MODEL"], full.variables["MODEL"]],
        "names": ["origin", "full"], "test": test, "label": label, "task": "regression"}),
    );
    assert_eq!(out.variables["METRIC"], "rmse");
    assert_eq!(out.variables["HIGHER_IS_BETTER"], "false");
    let table = out.metrics["models"].as_object().unwrap();
    let rmse = |name: &str| table[name]["rmse"].as_f64().unwrap();
    assert_ne!(rmse("origin"), rmse("full"));
    let best = if rmse("origin") < rmse("full") {
        "origin"
    } else {
        "full"
    };
    assert_eq!(out.variables["BEST"], best);
    assert_eq!(out.variables["SCORE"].parse::<f64>().unwrap(), rmse(best));
}

/// Every algorithm, scaled and not, on several splits: rows near a split threshold or a
/// decision boundary are where float32 serving could part from the Rust model.
#[test]
fn every_algorithm_serves_exactly_across_splits() {
    let job = Job::new();
    for seed in 0..4u64 {
        for dataset in ["iris", "house_prices"] {
            let data = job.run("load", "load_dataset", json!({ "name": dataset }));
            let split = job.run(
                &format!("split_{seed}_{dataset}"),
                "split",
                json!({"data": data.variables["DATA"], "label": data.variables["LABEL"],
                       "seed": seed}),
            );
            let v = &split.variables;
            let (train, test, label) = (&v["TRAIN"], &v["TEST"], &v["LABEL"]);
            let scale = if seed % 2 == 0 { "standard" } else { "minmax" };
            let pre = job.run(
                &format!("pre_{seed}_{dataset}"),
                "preprocess",
                json!({"train": train, "test": test, "label": label, "scale": scale}),
            );
            let algorithms: &[&str] = if dataset == "iris" {
                &[
                    "logistic_regression",
                    "decision_tree",
                    "random_forest",
                    "gaussian_nb",
                    "kmeans",
                ]
            } else {
                &[
                    "linear_regression",
                    "ridge",
                    "lasso",
                    "kmeans",
                    "decision_tree",
                    "random_forest",
                ]
            };
            for algorithm in algorithms {
                for scaled in [false, true] {
                    let mut p = json!({"train": train, "label": label, "algorithm": algorithm});
                    if *algorithm == "random_forest" {
                        p["n_trees"] = json!(15);
                        p["seed"] = json!(seed);
                    }
                    if dataset == "house_prices"
                        && ["decision_tree", "random_forest"].contains(algorithm)
                    {
                        p["task"] = json!("regression");
                    }
                    if scaled {
                        p["train"] = json!(pre.variables["TRAIN"]);
                        p["preprocess"] = json!(pre.variables["PREPROCESS"]);
                    }
                    let task = format!("train_{seed}_{dataset}_{algorithm}_{scaled}");
                    check_served(&job, &task, p, test, label);
                }
            }
        }
    }
}
