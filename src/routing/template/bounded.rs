//! The bounded evaluation of templates: the budget one evaluation may spend, and the only
//! filters, tests, functions and operators a template can reach, each held to that budget.
//!
//! Every evaluation runs inside a [`Scope`] that installs its [`Budget`] on the thread: a
//! deadline, a cap on any one value it builds, and a cap on all it builds together. The
//! environment has no builtins of its own: each of minijinja's filters, tests and functions is
//! registered through a wrapper that checks the deadline, refuses arguments that would make it
//! allocate past the caps (`indent(10**12)`, `replace` that multiplies, `batch(10**12)`, wide
//! `format` specs, `tojson` indents), and weighs what it returns. The operators the rewriter
//! turns into calls (`__cat`, `__add`, `__mul`, `__cmp`, `__item`, `__slice`) do the same, then
//! let minijinja compute the result with its own semantics.
//!
//! The weight of a value approximates the memory it holds: its string bytes, plus
//! [`ITEM_WEIGHT`] for each item, key and scalar. Weighing stops as soon as the cap is passed, so
//! it costs at most the cap.
//!
//! Owns: the budget and the wrappers. Must never: let a call allocate or iterate in proportion
//! to a number a tenant wrote without checking that number first.

use std::cell::{Cell, RefCell};
use std::sync::LazyLock;
use std::time::Instant;

use minijinja::value::{Rest, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Expression, State, Value};

use super::Limits;

/// What one item, key or scalar counts for in a value's weight: about the size of a
/// minijinja value.
pub const ITEM_WEIGHT: usize = 16;
/// Instructions one evaluation may run: bounds loops; the budget bounds what each step does.
pub const FUEL: u64 = 100_000;
/// Largest indent `tojson` takes.
const JSON_INDENT_MAX: i64 = 32;

/// What one evaluation may still spend.
pub struct Budget {
    deadline: Instant,
    render_ms: u64,
    value_max: usize,
    memory_max: usize,
    memory_left: Cell<usize>,
    /// Set when a bound stopped the evaluation, so its error is told apart from a template's
    /// own mistakes.
    tripped: RefCell<Option<String>>,
}

thread_local! {
    static CURRENT: RefCell<Option<std::rc::Rc<Budget>>> = const { RefCell::new(None) };
}

/// Installs a budget on this thread for one evaluation; the previous one is back on drop.
pub struct Scope {
    budget: std::rc::Rc<Budget>,
    previous: Option<std::rc::Rc<Budget>>,
}

impl Scope {
    pub fn enter(limits: &Limits, deadline: Instant) -> Scope {
        let budget = std::rc::Rc::new(Budget {
            deadline,
            render_ms: limits.render_ms,
            value_max: limits.value_max_bytes,
            memory_max: limits.memory_max_bytes,
            memory_left: Cell::new(limits.memory_max_bytes),
            tripped: RefCell::new(None),
        });
        let previous = CURRENT.with(|c| c.replace(Some(budget.clone())));
        Scope { budget, previous }
    }

    /// Why a bound stopped the evaluation, if one did.
    pub fn tripped(&self) -> Option<String> {
        self.budget.tripped.borrow().clone()
    }

    /// Stops the evaluation for a bound of the caller's (the output cap).
    pub fn trip(&self, reason: String) {
        self.budget.tripped.borrow_mut().get_or_insert(reason);
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

fn with_budget<R>(f: impl FnOnce(&Budget) -> Result<R, Error>) -> Result<R, Error> {
    let budget = CURRENT.with(|c| c.borrow().clone());
    match budget {
        Some(b) => f(&b),
        None => Err(Error::new(
            ErrorKind::InvalidOperation,
            "evaluated outside a budget",
        )),
    }
}

impl Budget {
    fn trip(&self, reason: String) -> Error {
        let err = Error::new(ErrorKind::InvalidOperation, reason.clone());
        self.tripped.borrow_mut().get_or_insert(reason);
        err
    }

    fn check_time(&self) -> Result<(), Error> {
        if Instant::now() >= self.deadline {
            return Err(self.trip(format!(
                "it ran longer than its time bound ({} ms)",
                self.render_ms
            )));
        }
        Ok(())
    }

    /// Refuses work that would build more than one value may hold.
    fn allow(&self, weight: Option<usize>) -> Result<(), Error> {
        match weight {
            Some(w) if w <= self.value_max => Ok(()),
            _ => Err(self.too_large()),
        }
    }

    fn too_large(&self) -> Error {
        self.trip(format!(
            "it would build a value larger than its bound ({} bytes)",
            self.value_max
        ))
    }

    /// Weighs a value the evaluation built and counts it against the evaluation's memory.
    fn charge(&self, v: &Value) -> Result<(), Error> {
        let w = weight(v, self.value_max).ok_or_else(|| self.too_large())?;
        let left = self.memory_left.get();
        if w > left {
            return Err(self.trip(format!(
                "it built more than its memory bound ({} bytes) in all",
                self.memory_max
            )));
        }
        self.memory_left.set(left - w);
        Ok(())
    }
}

/// The weight of a value, or `None` once it passes `cap`.
pub fn weight(v: &Value, cap: usize) -> Option<usize> {
    let mut total = 0;
    add_weight(v, cap, &mut total, 0).then_some(total)
}

/// Deepest nesting weighed; payloads are at most 128 deep (serde_json's limit).
const WEIGHT_DEPTH_MAX: usize = 256;

fn add_weight(v: &Value, cap: usize, total: &mut usize, depth: usize) -> bool {
    *total = total.saturating_add(ITEM_WEIGHT);
    if *total > cap || depth > WEIGHT_DEPTH_MAX {
        return false;
    }
    match v.kind() {
        ValueKind::String => *total = total.saturating_add(v.as_str().map_or(0, str::len)),
        ValueKind::Bytes => *total = total.saturating_add(v.as_bytes().map_or(0, <[u8]>::len)),
        ValueKind::Seq | ValueKind::Iterable => {
            if let Ok(items) = v.try_iter() {
                for item in items {
                    if !add_weight(&item, cap, total, depth + 1) {
                        return false;
                    }
                }
            }
        }
        ValueKind::Map => {
            if let Ok(keys) = v.try_iter() {
                for key in keys {
                    let item = v.get_item(&key).unwrap_or_default();
                    if !add_weight(&key, cap, total, depth + 1)
                        || !add_weight(&item, cap, total, depth + 1)
                    {
                        return false;
                    }
                }
            }
        }
        _ => {}
    }
    *total <= cap
}

/// An output that refuses to grow past its cap.
pub struct CappedWriter {
    pub buf: Vec<u8>,
    max: usize,
}

impl CappedWriter {
    pub fn new(max: usize) -> CappedWriter {
        CappedWriter {
            buf: Vec::new(),
            max,
        }
    }
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            return Err(std::io::Error::other("output bound"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The environment of one escaping mode: fuel, and only bounded filters, tests and functions.
pub fn environment(escape: AutoEscape) -> &'static Environment<'static> {
    static NONE: LazyLock<Environment<'static>> = LazyLock::new(|| build(AutoEscape::None));
    static JSON: LazyLock<Environment<'static>> = LazyLock::new(|| build(AutoEscape::Json));
    static HTML: LazyLock<Environment<'static>> = LazyLock::new(|| build(AutoEscape::Html));
    match escape {
        AutoEscape::Json => &JSON,
        AutoEscape::Html => &HTML,
        _ => &NONE,
    }
}

fn build(escape: AutoEscape) -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(move |_| escape.clone());
    register_filters(&mut env);
    register_tests(&mut env);
    register_functions(&mut env);
    env
}

/// The arguments a wrapper passes on as they came, keyword arguments included.
fn plain(args: Rest<ValueOrKwargs>) -> Vec<Value> {
    args.0.into_iter().map(Value::from).collect()
}

/// A wrapper's view of a filter's arguments: the value filtered first, then the rest.
fn arg(args: &[Value], n: usize) -> Option<&Value> {
    args.get(n).filter(|v| !v.is_kwargs())
}

fn kwarg(args: &[Value], name: &str) -> Option<Value> {
    args.last()
        .filter(|v| v.is_kwargs())
        .and_then(|kw| kw.get_attr(name).ok())
        .filter(|v| !v.is_undefined())
}

fn str_arg(args: &[Value], n: usize) -> Option<String> {
    arg(args, n).map(|v| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    })
}

/// Filters that only pick a part of their input or make a scalar: what they return is not
/// charged (it was weighed, or is small).
const PICKING: &[&str] = &[
    "length", "count", "first", "last", "default", "d", "attr", "min", "max", "bool", "int",
    "float", "abs", "round", "safe",
];

macro_rules! builtin_filters {
    ($env:ident, $($name:literal => $f:path),* $(,)?) => {
        $( register_filter($env, $name, Value::from_function($f)); )*
    };
}

fn register_filters(env: &mut Environment<'static>) {
    use minijinja::filters as f;
    builtin_filters!(env,
        "safe" => f::safe, "escape" => f::escape, "e" => f::escape,
        "lower" => f::lower, "upper" => f::upper, "title" => f::title,
        "capitalize" => f::capitalize, "replace" => f::replace, "length" => f::length,
        "count" => f::length, "dictsort" => f::dictsort, "items" => f::items,
        "reverse" => f::reverse, "trim" => f::trim, "join" => f::join, "split" => f::split,
        "lines" => f::lines, "default" => f::default, "d" => f::default, "round" => f::round,
        "abs" => f::abs, "int" => f::int, "float" => f::float, "attr" => f::attr,
        "first" => f::first, "last" => f::last, "min" => f::min, "max" => f::max,
        "sort" => f::sort, "list" => f::list, "string" => f::string, "bool" => f::bool,
        "batch" => f::batch, "slice" => f::slice, "sum" => f::sum, "indent" => f::indent,
        "select" => f::select, "reject" => f::reject, "selectattr" => f::selectattr,
        "rejectattr" => f::rejectattr, "map" => f::map, "groupby" => f::groupby,
        "unique" => f::unique, "chain" => f::chain, "zip" => f::zip, "pprint" => f::pprint,
        "format" => f::format, "tojson" => f::tojson,
    );
}

fn register_filter(env: &mut Environment<'static>, name: &'static str, inner: Value) {
    let picking = PICKING.contains(&name);
    env.add_filter(
        name,
        move |state: &mut State, args: Rest<ValueOrKwargs>| -> Result<Value, Error> {
            let args = plain(args);
            with_budget(|b| {
                b.check_time()?;
                precheck_filter(b, name, &args)?;
                let out = inner.call(state, &args)?;
                if !picking {
                    b.charge(&out)?;
                }
                Ok(out)
            })
        },
    );
}

/// Refuses the arguments that would make a filter allocate past the bound before it runs.
fn precheck_filter(b: &Budget, name: &str, args: &[Value]) -> Result<(), Error> {
    let cap = b.value_max;
    let input = args.first();
    let input_len = || input.and_then(|v| v.as_str()).map_or(0, str::len);
    match name {
        "indent" => {
            let width = match arg(args, 1) {
                Some(w) if w.kind() == ValueKind::String => w.as_str().map_or(0, str::len),
                Some(w) => w.as_usize().ok_or_else(|| b.too_large())?,
                None => 4,
            };
            let lines = input
                .and_then(|v| v.as_str())
                .map_or(1, |s| s.lines().count() + 1);
            b.allow(
                lines
                    .checked_mul(width)
                    .and_then(|n| n.checked_add(input_len())),
            )
        }
        "replace" => {
            let (Some(s), Some(old), Some(new)) = (
                input.and_then(|v| v.as_str()),
                str_arg(args, 1),
                str_arg(args, 2),
            ) else {
                return Ok(());
            };
            let mut times = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(old.as_str()).count()
            };
            if let Some(limit) = arg(args, 3).and_then(Value::as_usize) {
                times = times.min(limit);
            }
            b.allow(
                times
                    .checked_mul(new.len())
                    .and_then(|n| n.checked_add(s.len())),
            )
        }
        "join" => {
            let items = input.and_then(|v| v.len()).unwrap_or(0);
            let sep = str_arg(args, 1).map_or(0, |s| s.len());
            let w = input.and_then(|v| weight(v, cap));
            b.allow(w.and_then(|w| items.checked_mul(sep)?.checked_add(w)))
        }
        "split" | "lines" => {
            let Some(s) = input.and_then(|v| v.as_str()) else {
                return Ok(());
            };
            let pieces = match (name, str_arg(args, 1)) {
                ("split", Some(sep)) if !sep.is_empty() => s.matches(sep.as_str()).count() + 1,
                _ => s.split_whitespace().count() + s.lines().count() + 1,
            };
            b.allow(
                pieces
                    .checked_mul(ITEM_WEIGHT)
                    .and_then(|n| n.checked_add(s.len())),
            )
        }
        "batch" | "slice" => {
            let count = arg(args, 1).and_then(Value::as_usize).unwrap_or(0);
            let items = input.and_then(|v| v.len()).unwrap_or(0);
            b.allow(
                count
                    .checked_add(items)
                    .and_then(|n| n.checked_mul(ITEM_WEIGHT)),
            )
        }
        "format" => {
            let spec = input.and_then(|v| v.as_str()).unwrap_or_default();
            check_format_widths(b, spec)
        }
        "tojson" => {
            let indent = kwarg(args, "indent").or_else(|| arg(args, 1).cloned());
            match indent {
                Some(i) if i.kind() == ValueKind::Number => match i.as_i64() {
                    Some(n) if (0..=JSON_INDENT_MAX).contains(&n) => Ok(()),
                    _ => Err(b.trip(format!("tojson's indent must be 0 to {JSON_INDENT_MAX}"))),
                },
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// `format` pads to the widths and precisions its spec names: none may pass the value bound.
fn check_format_widths(b: &Budget, spec: &str) -> Result<(), Error> {
    let bytes = spec.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        while i < bytes.len() && !bytes[i].is_ascii_alphabetic() && bytes[i] != b'%' {
            if bytes[i] == b'*' {
                return Err(b.trip("format widths must be written as numbers".into()));
            }
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let n: Option<usize> = spec[start..i].parse().ok();
                b.allow(n)?;
                continue;
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}

fn register_tests(env: &mut Environment<'static>) {
    use minijinja::tests as t;
    let tests: &[(&'static str, Value)] = &[
        ("undefined", Value::from_function(t::is_undefined)),
        ("defined", Value::from_function(t::is_defined)),
        ("none", Value::from_function(t::is_none)),
        ("safe", Value::from_function(t::is_safe)),
        ("escaped", Value::from_function(t::is_safe)),
        ("boolean", Value::from_function(t::is_boolean)),
        ("odd", Value::from_function(t::is_odd)),
        ("even", Value::from_function(t::is_even)),
        ("divisibleby", Value::from_function(t::is_divisibleby)),
        ("number", Value::from_function(t::is_number)),
        ("integer", Value::from_function(t::is_integer)),
        ("int", Value::from_function(t::is_integer)),
        ("float", Value::from_function(t::is_float)),
        ("string", Value::from_function(t::is_string)),
        ("sequence", Value::from_function(t::is_sequence)),
        ("iterable", Value::from_function(t::is_iterable)),
        ("mapping", Value::from_function(t::is_mapping)),
        ("startingwith", Value::from_function(t::is_startingwith)),
        ("endingwith", Value::from_function(t::is_endingwith)),
        ("lower", Value::from_function(t::is_lower)),
        ("upper", Value::from_function(t::is_upper)),
        ("sameas", Value::from_function(t::is_sameas)),
        ("eq", Value::from_function(t::is_eq)),
        ("equalto", Value::from_function(t::is_eq)),
        ("==", Value::from_function(t::is_eq)),
        ("ne", Value::from_function(t::is_ne)),
        ("!=", Value::from_function(t::is_ne)),
        ("lt", Value::from_function(t::is_lt)),
        ("lessthan", Value::from_function(t::is_lt)),
        ("<", Value::from_function(t::is_lt)),
        ("le", Value::from_function(t::is_le)),
        ("<=", Value::from_function(t::is_le)),
        ("gt", Value::from_function(t::is_gt)),
        ("greaterthan", Value::from_function(t::is_gt)),
        (">", Value::from_function(t::is_gt)),
        ("ge", Value::from_function(t::is_ge)),
        (">=", Value::from_function(t::is_ge)),
        ("in", Value::from_function(t::is_in)),
        ("true", Value::from_function(t::is_true)),
        ("false", Value::from_function(t::is_false)),
        ("filter", Value::from_function(t::is_filter)),
        ("test", Value::from_function(t::is_test)),
    ];
    for (name, inner) in tests.iter().cloned() {
        env.add_test(
            name,
            move |state: &mut State, args: Rest<ValueOrKwargs>| -> Result<bool, Error> {
                let args = plain(args);
                with_budget(|b| b.check_time())?;
                Ok(inner.call(state, &args)?.is_true())
            },
        );
    }
}

fn register_functions(env: &mut Environment<'static>) {
    use minijinja::functions as f;
    for (name, inner) in [
        ("range", Value::from_function(f::range)),
        ("dict", Value::from_function(f::dict)),
        ("namespace", Value::from_function(f::namespace)),
    ] {
        env.add_function(
            name,
            move |state: &mut State, args: Rest<ValueOrKwargs>| -> Result<Value, Error> {
                let args = plain(args);
                with_budget(|b| {
                    b.check_time()?;
                    let out = inner.call(state, &args)?;
                    if name != "namespace" {
                        b.charge(&out)?;
                    }
                    Ok(out)
                })
            },
        );
    }
    env.add_function("__cat", |a: Value, b: Value| {
        with_budget(|budget| {
            budget.check_time()?;
            budget.allow(sum_weights(budget, &a, &b))?;
            built(budget, delegate(Op::Cat, &[a, b])?)
        })
    });
    env.add_function("__add", |a: Value, b: Value| {
        with_budget(|budget| {
            budget.check_time()?;
            budget.allow(sum_weights(budget, &a, &b))?;
            built(budget, delegate(Op::Add, &[a, b])?)
        })
    });
    env.add_function("__mul", |a: Value, b: Value| {
        with_budget(|budget| {
            budget.check_time()?;
            let repeated = |v: &Value, n: &Value| {
                let times = n.as_usize()?;
                weight(v, budget.value_max)?.checked_mul(times)
            };
            let grows = |v: &Value| {
                matches!(
                    v.kind(),
                    ValueKind::String | ValueKind::Seq | ValueKind::Iterable
                )
            };
            if grows(&a) {
                budget.allow(repeated(&a, &b))?;
            } else if grows(&b) {
                budget.allow(repeated(&b, &a))?;
            }
            built(budget, delegate(Op::Mul, &[a, b])?)
        })
    });
    env.add_function("__cmp", |first: Value, chain: Rest<Value>| {
        with_budget(|budget| {
            let mut left = first;
            for pair in chain.chunks(2) {
                budget.check_time()?;
                let [op, right] = pair else {
                    return Err(Error::new(ErrorKind::InvalidOperation, "bad comparison"));
                };
                let op = Op::compare(op.as_str().unwrap_or_default())?;
                if !delegate(op, &[left, right.clone()])?.is_true() {
                    return Ok(false);
                }
                left = right.clone();
            }
            Ok(true)
        })
    });
    env.add_function("__item", |a: Value, b: Value| {
        with_budget(|budget| {
            budget.check_time()?;
            delegate(Op::Item, &[a, b])
        })
    });
    env.add_function(
        "__slice",
        |a: Value, start: Value, stop: Value, step: Value| {
            with_budget(|budget| {
                budget.check_time()?;
                built(budget, delegate(Op::Slice, &[a, start, stop, step])?)
            })
        },
    );
}

fn sum_weights(b: &Budget, x: &Value, y: &Value) -> Option<usize> {
    weight(x, b.value_max)?.checked_add(weight(y, b.value_max)?)
}

fn built(b: &Budget, v: Value) -> Result<Value, Error> {
    b.charge(&v)?;
    Ok(v)
}

/// The operators the rewriter turns into calls, computed by minijinja itself once the call
/// has checked what they may cost.
#[derive(Clone, Copy)]
enum Op {
    Cat,
    Add,
    Mul,
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
    Item,
    Slice,
}

impl Op {
    const ALL: [(Op, &'static str); 13] = [
        (Op::Cat, "a ~ b"),
        (Op::Add, "a + b"),
        (Op::Mul, "a * b"),
        (Op::Eq, "a == b"),
        (Op::Ne, "a != b"),
        (Op::Lt, "a < b"),
        (Op::Lte, "a <= b"),
        (Op::Gt, "a > b"),
        (Op::Gte, "a >= b"),
        (Op::In, "a in b"),
        (Op::NotIn, "a not in b"),
        (Op::Item, "a[b]"),
        (Op::Slice, "a[b:c:d]"),
    ];

    fn compare(op: &str) -> Result<Op, Error> {
        Ok(match op {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Lte,
            ">" => Op::Gt,
            ">=" => Op::Gte,
            "in" => Op::In,
            "not in" => Op::NotIn,
            _ => return Err(Error::new(ErrorKind::InvalidOperation, "bad comparison")),
        })
    }
}

struct Delegates {
    exprs: Vec<Expression<'static, 'static>>,
}

static DELEGATES: LazyLock<Delegates> = LazyLock::new(|| {
    // A plain environment: the delegated expressions call nothing, so they need no builtins.
    let env: &'static Environment<'static> = Box::leak(Box::new(Environment::empty()));
    Delegates {
        exprs: Op::ALL
            .iter()
            .map(|(_, src)| env.compile_expression(src).expect("delegate expression"))
            .collect(),
    }
});

fn delegate(op: Op, args: &[Value]) -> Result<Value, Error> {
    let get = |n: usize| args.get(n).cloned().unwrap_or(Value::UNDEFINED);
    let ctx = minijinja::context! { a => get(0), b => get(1), c => get(2), d => get(3) };
    DELEGATES.exprs[op as usize].eval(ctx)
}
