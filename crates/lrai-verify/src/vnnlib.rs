//! VNN-LIB 1.0 properties: `(declare-const X_i Real)` / `(declare-const Y_j Real)` and
//! `(assert ...)` over `<=`, `>=`, `and`, `or` and linear terms (`+`, `-`, `*` by a
//! constant). The file describes the **unsafe** region: a point in it violates the
//! property.
//!
//! The result is a [`Property`]: a union of input boxes (one per disjunct of the input
//! constraints) and, for the outputs, a disjunction of clauses ([`Clause`]), each a
//! conjunction of linear constraints `c·y + d <= 0`. A clause that mixes inputs and
//! outputs, or an input constraint that is not a bound on one variable, is reported as
//! unsupported rather than approximated.

use std::fmt;

use crate::{Result, VerifyError};

/// One linear constraint on the outputs: unsafe when `coeffs · y + constant <= 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputConstraint {
    /// Coefficient per output (dense, length = number of outputs).
    pub coeffs: Vec<f64>,
    /// The constant term.
    pub constant: f64,
}

impl OutputConstraint {
    /// `coeffs · y + constant`: the constraint holds (unsafe side) when this is `<= 0`.
    pub fn value(&self, y: &[f64]) -> f64 {
        self.coeffs.iter().zip(y).map(|(c, v)| c * v).sum::<f64>() + self.constant
    }
}

/// A conjunction of output constraints; the property is violated at `x` when every
/// constraint of some clause holds for `f(x)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Clause {
    /// The constraints, all of which must hold (`<= 0`) for the clause to be unsafe.
    pub constraints: Vec<OutputConstraint>,
}

impl Clause {
    /// The clause's margin at output `y`: the largest constraint value. The clause is
    /// met (unsafe) exactly when the margin is `<= 0`.
    pub fn margin(&self, y: &[f64]) -> f64 {
        self.constraints
            .iter()
            .map(|c| c.value(y))
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// An axis-aligned input box, `lower[i] <= x_i <= upper[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputBox {
    /// Lower bounds.
    pub lower: Vec<f64>,
    /// Upper bounds.
    pub upper: Vec<f64>,
}

impl InputBox {
    /// True when some lower bound exceeds its upper bound (the box holds no point).
    pub fn is_empty(&self) -> bool {
        self.lower.iter().zip(&self.upper).any(|(l, u)| l > u)
    }
}

/// A parsed VNN-LIB property.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// Number of declared inputs `X_*`.
    pub num_inputs: usize,
    /// Number of declared outputs `Y_*`.
    pub num_outputs: usize,
    /// The input region: a union of boxes.
    pub boxes: Vec<InputBox>,
    /// The unsafe output condition: a disjunction of clauses. With no output constraint
    /// at all, there is one empty clause (every input is unsafe).
    pub clauses: Vec<Clause>,
}

impl Property {
    /// The smallest margin over clauses: `<= 0` exactly when `y` is unsafe.
    pub fn margin(&self, y: &[f64]) -> f64 {
        self.clauses
            .iter()
            .map(|c| c.margin(y))
            .fold(f64::INFINITY, f64::min)
    }

    /// True when the output `y` meets the unsafe condition.
    pub fn is_unsafe(&self, y: &[f64]) -> bool {
        self.margin(y) <= 0.0
    }
}

/// Parses VNN-LIB text; `name` is used in errors.
///
/// # Errors
/// [`VerifyError::Parse`] with line and column for malformed text,
/// [`VerifyError::UnsupportedProperty`] for constructs outside VNN-LIB 1.0 boxes + DNF.
pub fn parse(name: &str, text: &str) -> Result<Property> {
    let exprs = read_sexprs(name, text)?;
    let mut decls = Declarations::default();
    let mut asserts = Vec::new();
    for e in &exprs {
        let (head, args) = e.call(name)?;
        match head {
            "declare-const" => decls.declare(name, e, args)?,
            "assert" => {
                let [body] = args else {
                    return Err(e.error(name, "assert takes exactly one formula"));
                };
                asserts.push(body);
            }
            "set-logic" | "set-info" | "set-option" | "check-sat" | "get-model" | "exit" => {}
            other => {
                return Err(e.error(name, &format!("unknown command '{other}'")));
            }
        }
    }
    let num_inputs = decls.count(name, 'X')?;
    let num_outputs = decls.count(name, 'Y')?;
    if num_inputs == 0 {
        return Err(VerifyError::UnsupportedProperty {
            property: name.to_string(),
            reason: "no input variables X_i are declared".into(),
        });
    }

    // Each assert becomes a DNF over atoms; the asserts are conjoined.
    let mut dnf: Vec<Vec<Atom>> = vec![Vec::new()];
    for body in asserts {
        let f = to_dnf(name, body, &decls, num_inputs, num_outputs)?;
        dnf = conjoin(name, &dnf, &f)?;
    }

    // Split every disjunct into its input part (a box) and its output part (a clause).
    let mut pairs: Vec<(InputBox, Clause)> = Vec::new();
    for conj in dnf {
        let mut bx = InputBox {
            lower: vec![f64::NEG_INFINITY; num_inputs],
            upper: vec![f64::INFINITY; num_inputs],
        };
        let mut clause = Clause::default();
        for atom in conj {
            match atom {
                Atom::InputBound {
                    index,
                    lower,
                    value,
                } => {
                    if lower {
                        bx.lower[index] = bx.lower[index].max(value);
                    } else {
                        bx.upper[index] = bx.upper[index].min(value);
                    }
                }
                Atom::Output(c) => clause.constraints.push(c),
            }
        }
        if bx.is_empty() {
            continue;
        }
        // `(or A A)` repeats a disjunct; it must not count as a second pairing.
        if !pairs.contains(&(bx.clone(), clause.clone())) {
            pairs.push((bx, clause));
        }
    }
    if let Some((bx, _)) = pairs
        .iter()
        .find(|(bx, _)| bx.lower.iter().chain(&bx.upper).any(|v| !v.is_finite()))
    {
        let i = bx
            .lower
            .iter()
            .zip(&bx.upper)
            .position(|(l, u)| !l.is_finite() || !u.is_finite())
            .unwrap_or(0);
        return Err(VerifyError::UnsupportedProperty {
            property: name.to_string(),
            reason: format!(
                "input X_{i} has no finite lower and upper bound; every input needs both"
            ),
        });
    }
    // The common VNN-LIB shape: every disjunct has the same output clause (input box
    // union × output DNF), or the same box (one box × output DNF). Anything else pairs
    // boxes with different output conditions, which we do not support.
    let mut boxes: Vec<InputBox> = Vec::new();
    let mut clauses: Vec<Clause> = Vec::new();
    for (bx, clause) in &pairs {
        if !boxes.contains(bx) {
            boxes.push(bx.clone());
        }
        if !clauses.contains(clause) {
            clauses.push(clause.clone());
        }
    }
    if pairs.len() != boxes.len() * clauses.len() {
        return Err(VerifyError::UnsupportedProperty {
            property: name.to_string(),
            reason: "different input boxes are paired with different output conditions; \
                     only (union of boxes) × (disjunction of output clauses) is supported"
                .into(),
        });
    }
    if boxes.is_empty() {
        return Err(VerifyError::UnsupportedProperty {
            property: name.to_string(),
            reason: "the input constraints are contradictory (every box is empty)".into(),
        });
    }
    Ok(Property {
        num_inputs,
        num_outputs,
        boxes,
        clauses,
    })
}

/// Reads and parses a VNN-LIB file.
///
/// # Errors
/// [`VerifyError::Io`] when the file cannot be read, otherwise as [`parse`].
pub fn load(path: &std::path::Path) -> Result<Property> {
    let text = fs_err::read_to_string(path)?;
    parse(&path.display().to_string(), &text)
}

/// Most disjuncts a DNF may grow to (the product of `or`s); beyond it we refuse rather
/// than exhaust memory.
const MAX_DISJUNCTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
enum Atom {
    InputBound {
        index: usize,
        lower: bool,
        value: f64,
    },
    Output(OutputConstraint),
}

fn conjoin(name: &str, a: &[Vec<Atom>], b: &[Vec<Atom>]) -> Result<Vec<Vec<Atom>>> {
    if a.len().saturating_mul(b.len()) > MAX_DISJUNCTS {
        return Err(VerifyError::UnsupportedProperty {
            property: name.to_string(),
            reason: format!("the formula expands to more than {MAX_DISJUNCTS} disjuncts"),
        });
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut c = x.clone();
            c.extend(y.iter().cloned());
            out.push(c);
        }
    }
    Ok(out)
}

fn to_dnf(
    name: &str,
    e: &SExpr,
    decls: &Declarations,
    nx: usize,
    ny: usize,
) -> Result<Vec<Vec<Atom>>> {
    let (head, args) = e.call(name)?;
    match head {
        "and" => {
            let mut acc = vec![Vec::new()];
            for a in args {
                acc = conjoin(name, &acc, &to_dnf(name, a, decls, nx, ny)?)?;
            }
            Ok(acc)
        }
        "or" => {
            let mut acc = Vec::new();
            for a in args {
                acc.extend(to_dnf(name, a, decls, nx, ny)?);
                if acc.len() > MAX_DISJUNCTS {
                    return Err(e.error(name, "formula expands to too many disjuncts"));
                }
            }
            Ok(acc)
        }
        "<=" | ">=" | "<" | ">" | "=" => {
            let [lhs, rhs] = args else {
                return Err(e.error(name, &format!("'{head}' takes exactly two terms")));
            };
            let l = linear(name, lhs, decls)?;
            let r = linear(name, rhs, decls)?;
            // Strict and non-strict comparisons give the same closed region (boundaries
            // have measure zero and are included, which is the conservative choice for
            // a proof: a point on the boundary counts as unsafe).
            let diff = match head {
                "<=" | "<" => l.sub(&r),
                _ => r.sub(&l),
            };
            let mut atoms = vec![atom_for(name, e, &diff, nx, ny)?];
            if head == "=" {
                atoms.push(atom_for(name, e, &l.sub(&r), nx, ny)?);
            }
            Ok(vec![atoms])
        }
        other => Err(e.error(
            name,
            &format!("unsupported formula '{other}': expected and, or, <=, >="),
        )),
    }
}

/// Turns `diff <= 0` into an input bound or an output constraint.
fn atom_for(name: &str, e: &SExpr, diff: &Linear, nx: usize, ny: usize) -> Result<Atom> {
    let has_x = diff.x.iter().any(|&(_, c)| c != 0.0);
    let has_y = diff.y.iter().any(|&(_, c)| c != 0.0);
    match (has_x, has_y) {
        (true, true) => Err(e.error(
            name,
            "a constraint mixing inputs and outputs is not supported",
        )),
        (true, false) => {
            // Merge repeated variables (X_0 + X_0) before deciding it bounds one.
            let mut merged: std::collections::BTreeMap<usize, f64> =
                std::collections::BTreeMap::new();
            for &(i, c) in &diff.x {
                *merged.entry(i).or_insert(0.0) += c;
            }
            let terms: Vec<(usize, f64)> = merged.into_iter().filter(|(_, c)| *c != 0.0).collect();
            let [(index, c)] = terms.as_slice() else {
                return Err(e.error(
                    name,
                    "input constraints must bound one variable (X_i <= c or X_i >= c)",
                ));
            };
            let (index, c) = (*index, *c);
            if index >= nx {
                return Err(e.error(name, &format!("X_{index} is not declared")));
            }
            // c*x + k <= 0  =>  x <= -k/c (c > 0) or x >= -k/c (c < 0)
            let value = -diff.constant / c;
            Ok(Atom::InputBound {
                index,
                lower: c < 0.0,
                value,
            })
        }
        (false, _) => {
            let mut coeffs = vec![0.0; ny];
            for &(j, c) in &diff.y {
                let slot = coeffs
                    .get_mut(j)
                    .ok_or_else(|| e.error(name, &format!("Y_{j} is not declared")))?;
                *slot += c;
            }
            Ok(Atom::Output(OutputConstraint {
                coeffs,
                constant: diff.constant,
            }))
        }
    }
}

/// A linear term: Σ c·X_i + Σ c·Y_j + constant.
#[derive(Debug, Clone, Default)]
struct Linear {
    x: Vec<(usize, f64)>,
    y: Vec<(usize, f64)>,
    constant: f64,
}

impl Linear {
    fn scale(&self, k: f64) -> Linear {
        Linear {
            x: self.x.iter().map(|&(i, c)| (i, c * k)).collect(),
            y: self.y.iter().map(|&(i, c)| (i, c * k)).collect(),
            constant: self.constant * k,
        }
    }
    fn add(&self, o: &Linear) -> Linear {
        let mut r = self.clone();
        r.x.extend(o.x.iter().copied());
        r.y.extend(o.y.iter().copied());
        r.constant += o.constant;
        r
    }
    fn sub(&self, o: &Linear) -> Linear {
        self.add(&o.scale(-1.0))
    }
    fn is_constant(&self) -> bool {
        self.x.is_empty() && self.y.is_empty()
    }
}

fn linear(name: &str, e: &SExpr, decls: &Declarations) -> Result<Linear> {
    match &e.kind {
        SKind::Atom(tok) => {
            if let Some(v) = parse_number(tok) {
                return Ok(Linear {
                    constant: v,
                    ..Linear::default()
                });
            }
            let (kind, index) = decls.lookup(tok).ok_or_else(|| {
                e.error(
                    name,
                    &format!("'{tok}' is not a declared variable or a number"),
                )
            })?;
            let mut l = Linear::default();
            if kind == 'X' {
                l.x.push((index, 1.0));
            } else {
                l.y.push((index, 1.0));
            }
            Ok(l)
        }
        SKind::List(_) => {
            let (head, args) = e.call(name)?;
            let terms = args
                .iter()
                .map(|a| linear(name, a, decls))
                .collect::<Result<Vec<_>>>()?;
            match (head, terms.as_slice()) {
                ("+", [first, rest @ ..]) => Ok(rest.iter().fold(first.clone(), |a, t| a.add(t))),
                ("-", [only]) => Ok(only.scale(-1.0)),
                ("-", [first, rest @ ..]) => Ok(rest.iter().fold(first.clone(), |a, t| a.sub(t))),
                ("*", [a, b]) if a.is_constant() => Ok(b.scale(a.constant)),
                ("*", [a, b]) if b.is_constant() => Ok(a.scale(b.constant)),
                ("*", _) => Err(e.error(
                    name,
                    "'*' must multiply by a constant (the constraints must stay linear)",
                )),
                ("/", [a, b]) if b.is_constant() && b.constant != 0.0 => {
                    Ok(a.scale(1.0 / b.constant))
                }
                _ => Err(e.error(
                    name,
                    &format!("unsupported term '{head}': expected +, -, * or / by a constant"),
                )),
            }
        }
    }
}

fn parse_number(tok: &str) -> Option<f64> {
    let first = tok.chars().next()?;
    if !(first.is_ascii_digit() || first == '-' || first == '+' || first == '.') {
        return None;
    }
    tok.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[derive(Debug, Default)]
struct Declarations {
    x: Vec<bool>,
    y: Vec<bool>,
}

impl Declarations {
    fn declare(&mut self, name: &str, e: &SExpr, args: &[SExpr]) -> Result<()> {
        let [var, ty] = args else {
            return Err(e.error(name, "declare-const takes a name and a sort"));
        };
        let (SKind::Atom(var_name), SKind::Atom(sort)) = (&var.kind, &ty.kind) else {
            return Err(e.error(name, "declare-const takes a name and a sort"));
        };
        if sort != "Real" {
            return Err(ty.error(
                name,
                &format!("sort '{sort}' is not supported; expected Real"),
            ));
        }
        let Some((kind, index)) = split_var(var_name) else {
            return Err(var.error(
                name,
                &format!("variable '{var_name}' must be named X_<i> (input) or Y_<j> (output)"),
            ));
        };
        if index > 100_000_000 {
            return Err(var.error(name, "variable index too large"));
        }
        let list = if kind == 'X' {
            &mut self.x
        } else {
            &mut self.y
        };
        if list.len() <= index {
            list.resize(index + 1, false);
        }
        if list[index] {
            return Err(var.error(name, &format!("'{var_name}' is declared twice")));
        }
        list[index] = true;
        Ok(())
    }

    fn lookup(&self, tok: &str) -> Option<(char, usize)> {
        let (kind, index) = split_var(tok)?;
        let list = if kind == 'X' { &self.x } else { &self.y };
        list.get(index)
            .copied()
            .unwrap_or(false)
            .then_some((kind, index))
    }

    fn count(&self, name: &str, kind: char) -> Result<usize> {
        let list = if kind == 'X' { &self.x } else { &self.y };
        if let Some(missing) = list.iter().position(|d| !d) {
            return Err(VerifyError::UnsupportedProperty {
                property: name.to_string(),
                reason: format!(
                    "{kind}_{missing} is not declared but {kind}_{} is; indices must be 0..n",
                    list.len() - 1
                ),
            });
        }
        Ok(list.len())
    }
}

fn split_var(tok: &str) -> Option<(char, usize)> {
    let (kind, rest) = if let Some(r) = tok.strip_prefix("X_") {
        ('X', r)
    } else if let Some(r) = tok.strip_prefix("Y_") {
        ('Y', r)
    } else {
        return None;
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, rest.parse().ok()?))
}

/// Position in the source text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone)]
enum SKind {
    Atom(String),
    List(Vec<SExpr>),
}

#[derive(Debug, Clone)]
struct SExpr {
    kind: SKind,
    pos: Pos,
}

impl SExpr {
    fn error(&self, name: &str, message: &str) -> VerifyError {
        VerifyError::Parse {
            file: name.to_string(),
            line: self.pos.line,
            column: self.pos.column,
            message: message.to_string(),
        }
    }

    /// `(head args...)`.
    fn call(&self, name: &str) -> Result<(&str, &[SExpr])> {
        match &self.kind {
            SKind::List(items) => match items.split_first() {
                Some((
                    SExpr {
                        kind: SKind::Atom(h),
                        ..
                    },
                    rest,
                )) => Ok((h.as_str(), rest)),
                _ => Err(self.error(name, "expected '(' followed by an operator name")),
            },
            SKind::Atom(a) => {
                Err(self.error(name, &format!("expected a parenthesised form, got '{a}'")))
            }
        }
    }
}

fn read_sexprs(name: &str, text: &str) -> Result<Vec<SExpr>> {
    let err = |pos: Pos, message: &str| VerifyError::Parse {
        file: name.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.to_string(),
    };
    let mut stack: Vec<(Pos, Vec<SExpr>)> = Vec::new();
    let mut top = Vec::new();
    let mut line = 1;
    let mut col = 0;
    let mut chars = text.chars().peekable();
    let mut token = String::new();
    let mut token_pos = Pos { line: 1, column: 1 };
    // A finished token joins the innermost open list; at top level it is an error.
    fn flush(token: &mut String, pos: Pos, stack: &mut [(Pos, Vec<SExpr>)]) -> Result<(), Pos> {
        if token.is_empty() {
            return Ok(());
        }
        let atom = SExpr {
            kind: SKind::Atom(std::mem::take(token)),
            pos,
        };
        match stack.last_mut() {
            Some((_, items)) => {
                items.push(atom);
                Ok(())
            }
            None => Err(pos),
        }
    }
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += 1;
        }
        let here = Pos { line, column: col };
        match c {
            ';' => {
                flush(&mut token, token_pos, &mut stack)
                    .map_err(|p| err(p, "expected '(' at top level"))?;
                for c2 in chars.by_ref() {
                    if c2 == '\n' {
                        line += 1;
                        col = 0;
                        break;
                    }
                }
            }
            '(' => {
                flush(&mut token, token_pos, &mut stack)
                    .map_err(|p| err(p, "expected '(' at top level"))?;
                stack.push((here, Vec::new()));
            }
            ')' => {
                flush(&mut token, token_pos, &mut stack)
                    .map_err(|p| err(p, "expected '(' at top level"))?;
                let Some((pos, items)) = stack.pop() else {
                    return Err(err(here, "unbalanced ')': no '(' to close"));
                };
                let e = SExpr {
                    kind: SKind::List(items),
                    pos,
                };
                match stack.last_mut() {
                    Some((_, parent)) => parent.push(e),
                    None => top.push(e),
                }
            }
            c if c.is_whitespace() => {
                flush(&mut token, token_pos, &mut stack)
                    .map_err(|p| err(p, "expected '(' at top level"))?;
            }
            c => {
                if token.is_empty() {
                    token_pos = here;
                }
                token.push(c);
            }
        }
    }
    flush(&mut token, token_pos, &mut stack).map_err(|p| err(p, "expected '(' at top level"))?;
    if let Some((pos, _)) = stack.last() {
        return Err(err(*pos, "unclosed '(': the file ends before its ')'"));
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_acas_style_conjunction() {
        let p = parse(
            "p",
            "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n\
             (assert (<= X_0 1))(assert (>= X_0 -1))(assert (<= X_1 0.5))(assert (>= X_1 0))\n\
             (assert (<= Y_1 Y_0))",
        )
        .unwrap();
        assert_eq!(p.boxes.len(), 1);
        assert_eq!(p.boxes[0].lower, vec![-1.0, 0.0]);
        assert_eq!(p.boxes[0].upper, vec![1.0, 0.5]);
        assert_eq!(p.clauses.len(), 1);
        // Y_1 - Y_0 <= 0
        assert_eq!(p.clauses[0].constraints[0].coeffs, vec![-1.0, 1.0]);
        assert!(p.is_unsafe(&[2.0, 1.0]));
        assert!(!p.is_unsafe(&[1.0, 2.0]));
    }

    #[test]
    fn reports_line_and_column() {
        let e = parse("f.vnnlib", "(declare-const X_0 Real)\n(assert (<= X_0 1)\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.vnnlib:2:1: unclosed '(': the file ends before its ')'"
        );
        let e = parse(
            "f.vnnlib",
            "(declare-const X_0 Real)\n  (assert (<= X_0 foo))",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("f.vnnlib:2:19: 'foo'"), "{e}");
    }
}
