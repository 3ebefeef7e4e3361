//! Rewrites a template or condition so that every operator that can allocate or iterate
//! natively becomes a call of one of Herald's bounded functions (`bounded.rs`).
//!
//! minijinja evaluates `~`, `+`, `*`, comparisons, `in`, subscripts and slices inside its VM,
//! where no budget reaches: `"a" * 100000000` allocates 100 MB in one step, and a few
//! `{% set s = s ~ s %}` double a string past any memory. So the source is parsed (minijinja's
//! own parser), refused if it uses a construct Herald cannot bound, and printed back with those
//! operators spelled as calls: `a ~ b` becomes `__cat(a, b)`, `x[1:]` becomes
//! `__slice(x, 1, none, none)`. Everything else prints as it was written, fully parenthesised,
//! so the program means what it meant.
//!
//! Owns: the printing and the refusals. Must never: change what a template means (the
//! round-trip test renders a corpus both ways and compares).

use minijinja::machinery::ast::{self, BinOpKind, CallArg, CompareOpKind, Expr, Stmt, UnaryOpKind};
use minijinja::value::ValueKind;

use super::TemplateError;

/// Prints a template with its operators bounded, or says which construct it cannot have.
pub fn template(source: &str) -> Result<String, TemplateError> {
    let parsed = minijinja::machinery::parse(source, "<template>", Default::default())
        .map_err(super::render_error)?;
    let mut out = String::with_capacity(source.len() + source.len() / 2);
    Printer { out: &mut out }.stmt(&parsed)?;
    Ok(out)
}

/// Prints a condition (an expression) with its operators bounded.
pub fn expression(source: &str) -> Result<String, TemplateError> {
    let parsed = minijinja::machinery::parse_expr(source).map_err(super::render_error)?;
    let mut out = String::with_capacity(source.len() + source.len() / 2);
    Printer { out: &mut out }.expr(&parsed)?;
    Ok(out)
}

fn unsupported(what: &str) -> TemplateError {
    TemplateError::Unsupported(format!(
        "{what} cannot be used in Herald templates, because what it builds cannot be bounded"
    ))
}

struct Printer<'o> {
    out: &'o mut String,
}

impl Printer<'_> {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn body(&mut self, stmts: &[Stmt<'_>]) -> Result<(), TemplateError> {
        stmts.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, stmt: &Stmt<'_>) -> Result<(), TemplateError> {
        match stmt {
            Stmt::Template(t) => self.body(&t.children)?,
            Stmt::EmitExpr(e) => {
                self.push("{{ ");
                self.expr(&e.expr)?;
                self.push(" }}");
            }
            Stmt::EmitRaw(r) => self.raw(r.raw),
            Stmt::ForLoop(f) => {
                if f.recursive {
                    return Err(unsupported("a recursive loop"));
                }
                self.push("{% for ");
                self.target(&f.target)?;
                self.push(" in ");
                self.expr(&f.iter)?;
                if let Some(filter) = &f.filter_expr {
                    self.push(" if ");
                    self.expr(filter)?;
                }
                self.push(" %}");
                self.body(&f.body)?;
                if !f.else_body.is_empty() {
                    self.push("{% else %}");
                    self.body(&f.else_body)?;
                }
                self.push("{% endfor %}");
            }
            Stmt::IfCond(i) => {
                self.push("{% if ");
                self.expr(&i.expr)?;
                self.push(" %}");
                self.body(&i.true_body)?;
                if !i.false_body.is_empty() {
                    self.push("{% else %}");
                    self.body(&i.false_body)?;
                }
                self.push("{% endif %}");
            }
            Stmt::WithBlock(w) => {
                self.push("{% with ");
                for (n, (target, value)) in w.assignments.iter().enumerate() {
                    if n > 0 {
                        self.push(", ");
                    }
                    self.target(target)?;
                    self.push(" = ");
                    self.expr(value)?;
                }
                self.push(" %}");
                self.body(&w.body)?;
                self.push("{% endwith %}");
            }
            Stmt::Set(s) => {
                self.push("{% set ");
                self.target(&s.target)?;
                self.push(" = ");
                self.expr(&s.expr)?;
                self.push(" %}");
            }
            // A block's output is captured into a string no bound sees while it grows.
            Stmt::SetBlock(_) => {
                return Err(unsupported(
                    "a {% set %}...{% endset %} block (use {% set name = ... %})",
                ));
            }
            Stmt::FilterBlock(_) => return Err(unsupported("a {% filter %} block")),
            Stmt::AutoEscape(a) => {
                self.push("{% autoescape ");
                self.expr(&a.enabled)?;
                self.push(" %}");
                self.body(&a.body)?;
                self.push("{% endautoescape %}");
            }
            Stmt::Do(d) => {
                self.push("{% do ");
                self.call(&d.call)?;
                self.push(" %}");
            }
            // Macros, imports and loop controls are not compiled into Herald's minijinja; should
            // a build ever have them, they are refused rather than printed unbounded.
            #[allow(unreachable_patterns)]
            _ => return Err(unsupported("this statement")),
        }
        Ok(())
    }

    /// Template text, already trimmed by the parser, printed so that it is emitted verbatim:
    /// inside raw blocks, split wherever the text itself holds a block opener.
    fn raw(&mut self, text: &str) {
        for (n, piece) in text.split("{%").enumerate() {
            if n > 0 {
                self.push("{{ \"{%\"|safe }}");
            }
            if !piece.is_empty() {
                self.push("{% raw %}");
                self.push(piece);
                self.push("{% endraw %}");
            }
        }
    }

    /// The left side of `set`, `for` and `with`: names, `ns.attr`, and unpacking lists of them
    /// (written bare at the top, `k, v`, in parentheses when nested).
    fn target(&mut self, e: &Expr<'_>) -> Result<(), TemplateError> {
        self.target_at(e, false)
    }

    fn target_at(&mut self, e: &Expr<'_>, nested: bool) -> Result<(), TemplateError> {
        let items = match e {
            Expr::Var(v) => {
                self.push(v.id);
                return Ok(());
            }
            Expr::GetAttr(g) => {
                self.target_at(&g.expr, true)?;
                self.push(".");
                self.push(g.name);
                return Ok(());
            }
            Expr::Tuple(t) => &t.items,
            Expr::List(l) => &l.items,
            _ => return Err(unsupported("this assignment target")),
        };
        if nested {
            self.push("(");
        }
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.push(", ");
            }
            self.target_at(item, true)?;
        }
        if items.len() == 1 {
            self.push(",");
        }
        if nested {
            self.push(")");
        }
        Ok(())
    }

    fn expr(&mut self, e: &Expr<'_>) -> Result<(), TemplateError> {
        match e {
            Expr::Var(v) => self.push(v.id),
            Expr::Const(c) => self.constant(&c.value)?,
            Expr::Slice(s) => {
                self.push("__slice(");
                self.expr(&s.expr)?;
                for part in [&s.start, &s.stop, &s.step] {
                    self.push(", ");
                    match part {
                        Some(p) => self.expr(p)?,
                        None => self.push("none"),
                    }
                }
                self.push(")");
            }
            Expr::UnaryOp(u) => {
                self.push(match u.op {
                    UnaryOpKind::Not => "(not ",
                    UnaryOpKind::Neg => "(-",
                });
                self.expr(&u.expr)?;
                self.push(")");
            }
            Expr::BinOp(b) => {
                let native = match b.op {
                    BinOpKind::Add => return self.call2("__add", &b.left, &b.right),
                    BinOpKind::Mul => return self.call2("__mul", &b.left, &b.right),
                    BinOpKind::Concat => return self.call2("__cat", &b.left, &b.right),
                    BinOpKind::Eq => return self.compare(&b.left, &[("==", &b.right)]),
                    BinOpKind::Ne => return self.compare(&b.left, &[("!=", &b.right)]),
                    BinOpKind::Lt => return self.compare(&b.left, &[("<", &b.right)]),
                    BinOpKind::Lte => return self.compare(&b.left, &[("<=", &b.right)]),
                    BinOpKind::Gt => return self.compare(&b.left, &[(">", &b.right)]),
                    BinOpKind::Gte => return self.compare(&b.left, &[(">=", &b.right)]),
                    BinOpKind::In => return self.compare(&b.left, &[("in", &b.right)]),
                    // Numbers only, or short-circuiting: nothing grows.
                    BinOpKind::Sub => " - ",
                    BinOpKind::Div => " / ",
                    BinOpKind::FloorDiv => " // ",
                    BinOpKind::Rem => " % ",
                    BinOpKind::Pow => " ** ",
                    BinOpKind::ScAnd => " and ",
                    BinOpKind::ScOr => " or ",
                };
                self.push("(");
                self.expr(&b.left)?;
                self.push(native);
                self.expr(&b.right)?;
                self.push(")");
            }
            Expr::Compare(c) => {
                let ops: Vec<(&str, &Expr<'_>)> = c
                    .ops
                    .iter()
                    .map(|op| (compare_op(&op.op), &op.expr))
                    .collect();
                self.compare(&c.expr, &ops)?;
            }
            Expr::IfExpr(i) => {
                self.push("(");
                self.expr(&i.true_expr)?;
                self.push(" if ");
                self.expr(&i.test_expr)?;
                if let Some(f) = &i.false_expr {
                    self.push(" else ");
                    self.expr(f)?;
                }
                self.push(")");
            }
            Expr::Filter(f) => {
                let Some(operand) = &f.expr else {
                    return Err(unsupported("a filter without a value"));
                };
                self.push("((");
                self.expr(operand)?;
                self.push(")|");
                self.push(f.name);
                if !f.args.is_empty() {
                    self.args(&f.args)?;
                }
                self.push(")");
            }
            Expr::Test(t) => {
                self.push("((");
                self.expr(&t.expr)?;
                self.push(") is ");
                self.push(t.name);
                if !t.args.is_empty() {
                    self.args(&t.args)?;
                }
                self.push(")");
            }
            Expr::GetAttr(g) => {
                self.push("(");
                self.expr(&g.expr)?;
                self.push(").");
                self.push(g.name);
            }
            Expr::GetItem(g) => self.call2("__item", &g.expr, &g.subscript_expr)?,
            Expr::Call(c) => self.call(c)?,
            Expr::List(l) => {
                self.push("[");
                self.items(&l.items)?;
                self.push("]");
            }
            Expr::Tuple(t) => {
                self.push("(");
                self.items(&t.items)?;
                if t.items.len() == 1 {
                    self.push(",");
                }
                self.push(")");
            }
            Expr::Map(m) => {
                self.push("{");
                for (n, (k, v)) in m.keys.iter().zip(&m.values).enumerate() {
                    if n > 0 {
                        self.push(", ");
                    }
                    self.expr(k)?;
                    self.push(": ");
                    self.expr(v)?;
                }
                self.push("}");
            }
        }
        Ok(())
    }

    fn items(&mut self, items: &[Expr<'_>]) -> Result<(), TemplateError> {
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.push(", ");
            }
            self.expr(item)?;
        }
        Ok(())
    }

    fn call2(&mut self, name: &str, a: &Expr<'_>, b: &Expr<'_>) -> Result<(), TemplateError> {
        self.push(name);
        self.push("(");
        self.expr(a)?;
        self.push(", ");
        self.expr(b)?;
        self.push(")");
        Ok(())
    }

    /// A chain of comparisons, `a < b <= c`, as one call that keeps the chain's meaning.
    fn compare(
        &mut self,
        first: &Expr<'_>,
        ops: &[(&str, &Expr<'_>)],
    ) -> Result<(), TemplateError> {
        self.push("__cmp(");
        self.expr(first)?;
        for (op, e) in ops {
            self.push(", \"");
            self.push(op);
            self.push("\", ");
            self.expr(e)?;
        }
        self.push(")");
        Ok(())
    }

    fn call(&mut self, c: &ast::Call<'_>) -> Result<(), TemplateError> {
        match &c.expr {
            Expr::Var(v) => self.push(v.id),
            // A method call is told apart from a call of an attribute by its shape.
            Expr::GetAttr(g) => {
                self.push("(");
                self.expr(&g.expr)?;
                self.push(").");
                self.push(g.name);
            }
            other => {
                self.push("(");
                self.expr(other)?;
                self.push(")");
            }
        }
        self.args(&c.args)
    }

    fn args(&mut self, args: &[CallArg<'_>]) -> Result<(), TemplateError> {
        self.push("(");
        for (n, arg) in args.iter().enumerate() {
            if n > 0 {
                self.push(", ");
            }
            match arg {
                CallArg::Pos(e) => self.expr(e)?,
                CallArg::Kwarg(name, e) => {
                    self.push(name);
                    self.push("=");
                    self.expr(e)?;
                }
                CallArg::PosSplat(e) => {
                    self.push("*");
                    self.expr(e)?;
                }
                CallArg::KwargSplat(e) => {
                    self.push("**");
                    self.expr(e)?;
                }
            }
        }
        self.push(")");
        Ok(())
    }

    fn constant(&mut self, v: &minijinja::Value) -> Result<(), TemplateError> {
        match v.kind() {
            ValueKind::None | ValueKind::Undefined => self.push("none"),
            ValueKind::Bool => self.push(if v.is_true() { "true" } else { "false" }),
            // Debug keeps a float a float (`1.0`, `1e300`) where Display could print `1`.
            ValueKind::Number => {
                let text = format!("{v:?}");
                self.push(&text);
            }
            ValueKind::String => {
                let text = serde_json::to_string(v.as_str().unwrap_or_default())
                    .map_err(|e| TemplateError::Render(e.to_string()))?;
                self.push(&text);
            }
            _ => return Err(unsupported("this constant")),
        }
        Ok(())
    }
}

fn compare_op(op: &CompareOpKind) -> &'static str {
    match op {
        CompareOpKind::Eq => "==",
        CompareOpKind::Ne => "!=",
        CompareOpKind::Lt => "<",
        CompareOpKind::Lte => "<=",
        CompareOpKind::Gt => ">",
        CompareOpKind::Gte => ">=",
        CompareOpKind::In => "in",
        CompareOpKind::NotIn => "not in",
    }
}
