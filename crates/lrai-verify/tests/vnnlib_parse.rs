//! VNN-LIB 1.0 parsing: the shapes the VNN-COMP benchmarks use, linear terms, and
//! malformed or unsupported files (errors name the line and column).
#![allow(clippy::unwrap_used)]

use lrai_verify::VerifyError;
use lrai_verify::vnnlib::{Property, parse};

const DECL2: &str = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n";

fn ok(text: &str) -> Property {
    parse("t.vnnlib", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error's (line, column, message) for a malformed file.
fn parse_error(text: &str) -> (usize, usize, String) {
    match parse("t.vnnlib", text) {
        Err(VerifyError::Parse {
            file,
            line,
            column,
            message,
        }) => {
            assert_eq!(file, "t.vnnlib");
            (line, column, message)
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn unsupported(text: &str) -> String {
    match parse("t.vnnlib", text) {
        Err(VerifyError::UnsupportedProperty { reason, .. }) => reason,
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn comments_commands_and_number_forms() {
    let p = ok(&format!(
        "; a comment (with parentheses\n(set-logic QF_LRA)\n{DECL2}\
         (assert (>= X_0 -1.5e-1)) ; trailing comment\n(assert (<= X_0 2E0))\n\
         (assert (>= X_1 -.5))(assert (<= X_1 +0.5))\n(assert (<= Y_0 -3))\n(check-sat)\n(exit)\n"
    ));
    assert_eq!((p.num_inputs, p.num_outputs), (2, 2));
    assert_eq!(p.boxes.len(), 1);
    assert_eq!(p.boxes[0].lower, vec![-0.15, -0.5]);
    assert_eq!(p.boxes[0].upper, vec![2.0, 0.5]);
    // Y_0 + 3 <= 0
    let c = &p.clauses[0].constraints[0];
    assert_eq!((c.coeffs.as_slice(), c.constant), (&[1.0, 0.0][..], 3.0));
}

#[test]
fn acas_prop_2_style_conjunction_is_one_clause() {
    let p = ok(&format!(
        "{DECL2}(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))\n\
         (assert (<= Y_1 Y_0))\n(assert (>= Y_0 0.5))"
    ));
    assert_eq!(p.clauses.len(), 1);
    assert_eq!(p.clauses[0].constraints.len(), 2);
    assert!(p.is_unsafe(&[1.0, 0.0]));
    assert!(!p.is_unsafe(&[0.4, 0.0]), "second constraint fails");
    assert!(!p.is_unsafe(&[1.0, 2.0]), "first constraint fails");
}

#[test]
fn mnist_style_disjunction_is_one_clause_each() {
    let p = ok(&format!(
        "{DECL2}(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))\n\
         (assert (or\n  (and (>= Y_1 Y_0))\n  (and (<= Y_0 -1) (>= Y_1 5))\n))"
    ));
    assert_eq!(p.clauses.len(), 2);
    assert_eq!(p.clauses[1].constraints.len(), 2);
    assert!(
        p.is_unsafe(&[1.0, 1.0]),
        "ties count as unsafe (closed region)"
    );
    assert!(!p.is_unsafe(&[1.0, 0.5]));
    assert!(p.is_unsafe(&[-2.0, 6.0]));
}

#[test]
fn union_of_boxes_in_an_or() {
    let p = ok(&format!(
        "{DECL2}(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))\n\
                            (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1))))\n\
         (assert (>= Y_0 1))"
    ));
    assert_eq!(p.boxes.len(), 2);
    assert_eq!(p.boxes[1].lower, vec![2.0, 0.0]);
    assert_eq!(p.clauses.len(), 1);
}

#[test]
fn linear_terms_strict_and_equal() {
    let p = ok(&format!(
        "{DECL2}(assert (<= (* 2 X_0) 1))(assert (>= X_0 (- 0 1)))\n\
         (assert (= X_1 0.25))\n\
         (assert (< (+ Y_0 (* -2 Y_1) 1) (- Y_1 3)))"
    ));
    assert_eq!(p.boxes[0].lower, vec![-1.0, 0.25]);
    assert_eq!(p.boxes[0].upper, vec![0.5, 0.25]);
    // y0 − 2·y1 + 1 − (y1 − 3) <= 0  →  y0 − 3·y1 + 4 <= 0
    let c = &p.clauses[0].constraints[0];
    assert_eq!((c.coeffs.as_slice(), c.constant), (&[1.0, -3.0][..], 4.0));
}

#[test]
fn tightest_bound_wins_and_repeats_are_harmless() {
    let p = ok(&format!(
        "{DECL2}(assert (<= X_0 1))(assert (<= X_0 0.5))(assert (>= X_0 0))(assert (>= X_0 -1))\n\
         (assert (<= X_1 1))(assert (>= X_1 0))(assert (<= X_1 1))\n(assert (>= Y_0 1))"
    ));
    assert_eq!(p.boxes[0].lower[0], 0.0);
    assert_eq!(p.boxes[0].upper[0], 0.5);
}

#[test]
fn malformed_files_name_line_and_column() {
    // Unclosed paren: points at the '(' that never closes.
    let (l, c, m) = parse_error("(declare-const X_0 Real)\n\n   (assert (<= X_0 1)\n");
    assert_eq!((l, c), (3, 4), "{m}");
    assert!(m.contains("unclosed"), "{m}");
    // A stray ')'.
    let (l, c, m) = parse_error("(declare-const X_0 Real))\n");
    assert_eq!((l, c), (1, 25), "{m}");
    assert!(m.contains("unbalanced"), "{m}");
    // An undeclared variable, at its own position.
    let (l, c, m) = parse_error("(declare-const X_0 Real)\n(assert (<= X_7 1))");
    assert_eq!((l, c), (2, 13), "{m}");
    assert!(m.contains("X_7"), "{m}");
    // A word that is neither a variable nor a number.
    let (l, c, m) = parse_error("(declare-const X_0 Real)\n(assert (<= X_0 one))");
    assert_eq!((l, c), (2, 17), "{m}");
    // Unknown command and unknown formula.
    let (l, _, m) = parse_error("(declare-const X_0 Real)\n(frobnicate X_0)");
    assert_eq!(l, 2);
    assert!(m.contains("frobnicate"), "{m}");
    let (l, _, m) = parse_error("(declare-const X_0 Real)\n(assert (not (<= X_0 1)))");
    assert_eq!(l, 2);
    assert!(m.contains("not"), "{m}");
    // Wrong arity and wrong sort.
    let (_, _, m) = parse_error("(declare-const X_0 Real)\n(assert (<= X_0 1) (<= X_0 2))");
    assert!(m.contains("exactly one"), "{m}");
    let (_, _, m) = parse_error("(declare-const X_0 Real)\n(assert (<= X_0 1 2))");
    assert!(m.contains("two terms"), "{m}");
    let (l, _, m) = parse_error("(declare-const X_0 Int)");
    assert_eq!(l, 1);
    assert!(m.contains("Int") || m.contains("Real"), "{m}");
    let (_, _, m) = parse_error("(declare-const X_0 Real)\n(declare-const X_0 Real)");
    assert!(m.contains("twice"), "{m}");
    // A bare atom at top level.
    let (l, c, _) = parse_error("(declare-const X_0 Real)\n  oops");
    assert_eq!((l, c), (2, 3));
    // A constraint mixing inputs and outputs, and a non-box input constraint.
    let (l, _, m) = parse_error(&format!("{DECL2}(assert (<= X_0 Y_0))"));
    assert_eq!(l, 5);
    assert!(m.contains("mixing"), "{m}");
    let (_, _, m) = parse_error(&format!("{DECL2}(assert (<= (+ X_0 X_1) 1))"));
    assert!(m.contains("one variable"), "{m}");
    // Numbers that overflow are not numbers.
    let (_, _, m) = parse_error("(declare-const X_0 Real)\n(assert (<= X_0 1e999))");
    assert!(m.contains("1e999"), "{m}");
}

#[test]
fn well_formed_but_unsupported() {
    // An input without an upper bound.
    let r = unsupported(&format!(
        "{DECL2}(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))(assert (>= Y_0 1))"
    ));
    assert!(r.contains("X_0"), "{r}");
    // No inputs at all.
    let r = unsupported("(declare-const Y_0 Real)\n(assert (>= Y_0 1))");
    assert!(r.contains("no input"), "{r}");
    // Contradictory box.
    let r = unsupported(&format!(
        "{DECL2}(assert (>= X_0 1))(assert (<= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))(assert (>= Y_0 1))"
    ));
    assert!(r.contains("contradictory"), "{r}");
    // Different boxes with different output conditions.
    let r = unsupported(&format!(
        "{DECL2}(assert (<= X_1 1))(assert (>= X_1 0))\n\
         (assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 1)) (and (>= X_0 2) (<= X_0 3) (>= Y_1 1))))"
    ));
    assert!(r.contains("paired"), "{r}");
}

#[test]
fn load_reports_missing_file_with_its_path() {
    let e = lrai_verify::vnnlib::load(std::path::Path::new("/nonexistent/p.vnnlib")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/p.vnnlib"), "{e}");
}
