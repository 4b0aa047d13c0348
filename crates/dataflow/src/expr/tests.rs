//! Unit tests: precedence and associativity, promotion, error columns. The documented
//! examples live in `tests/` as table files.

use super::*;

fn eval_with(src: &str, inputs: &[Value<'_>]) -> Result<String, String> {
    let expr = Expr::compile(src, inputs.len()).map_err(|e| e.to_string())?;
    let owned: Vec<Value<'_>> = inputs.to_vec();
    match expr.eval(&owned) {
        Ok(v) => Ok(format!("{}:{v}", v.type_name())),
        Err(e) => Err(e.to_string()),
    }
}

fn ev(src: &str) -> String {
    eval_with(src, &[]).unwrap_or_else(|e| format!("error: {e}"))
}

fn parse_err(src: &str) -> String {
    match Expr::compile(src, 2) {
        Ok(_) => "compiled".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn multiplication_binds_tighter_than_addition() {
    assert_eq!(ev("1 + 2 * 3"), "int:7");
    assert_eq!(ev("(1 + 2) * 3"), "int:9");
}

#[test]
fn exponent_binds_tighter_than_multiplication() {
    // concept-dataflow-conversions: `$1 * 2 ^ 3` is `$1 * 8`.
    assert_eq!(
        eval_with("$1 * 2 ^ 3", &[Value::Int(5)]),
        Ok("int:40".into())
    );
    assert_eq!(
        eval_with("($1 * 2) ^ 3", &[Value::Int(5)]),
        Ok("int:1000".into())
    );
}

#[test]
fn exponent_is_right_associative() {
    assert_eq!(ev("2 ^ 3 ^ 2"), "int:512");
}

#[test]
fn negation_binds_tighter_than_multiplication_but_not_exponent() {
    assert_eq!(eval_with("-$1 * 2", &[Value::Int(3)]), Ok("int:-6".into()));
    assert_eq!(
        eval_with("-($1 * 2)", &[Value::Int(3)]),
        Ok("int:-6".into())
    );
    assert_eq!(ev("-2 ^ 2"), "int:-4");
    assert_eq!(ev("2 ^ -1"), "float:0.5");
}

#[test]
fn subtraction_and_division_are_left_associative() {
    assert_eq!(ev("10 - 4 - 3"), "int:3");
    assert_eq!(ev("64 / 4 / 2"), "int:8");
    assert_eq!(ev("17 % 5 % 3"), "int:2");
}

#[test]
fn comparison_binds_looser_than_arithmetic() {
    // `$1 * 2 <= $2` is `($1 * 2) <= $2`.
    assert_eq!(
        eval_with("$1 * 2 <= $2", &[Value::Int(3), Value::Int(6)]),
        Ok("boolean:true".into())
    );
}

#[test]
fn equality_binds_looser_than_ordering() {
    assert_eq!(ev("1 < 2 == 3 < 4"), "boolean:true");
    assert_eq!(ev("true == 1 < 2"), "boolean:true");
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(ev("true || false && false"), "boolean:true");
    assert_eq!(ev("(true || false) && false"), "boolean:false");
}

#[test]
fn not_applies_to_its_neighbour() {
    assert_eq!(ev("!false && false"), "boolean:false");
    assert_eq!(ev("!(false && false)"), "boolean:true");
    assert_eq!(ev("!1 == 1"), "error: `!` cannot take int");
}

#[test]
fn integer_division_stays_integer_and_mixed_promotes() {
    assert_eq!(ev("7 / 2"), "int:3");
    assert_eq!(ev("7 / 2.0"), "float:3.5");
    assert_eq!(ev("7.5 % 2"), "float:1.5");
    assert_eq!(ev("1 == 1.0"), "boolean:true");
}

#[test]
fn integer_errors_are_typed() {
    assert_eq!(ev("1 / 0"), "error: division by zero");
    assert_eq!(ev("1 % 0"), "error: division by zero");
    assert_eq!(
        ev("9223372036854775807 + 1"),
        "error: integer overflow in `+`"
    );
    assert_eq!(ev("1.0 / 0"), "float:inf");
}

#[test]
fn plus_concatenates_when_either_side_is_a_string() {
    assert_eq!(ev(r#""a" + 1"#), "string:a1");
    assert_eq!(ev(r#"1.5 + "b""#), "string:1.5b");
    assert_eq!(ev(r#"true + "!""#), "string:true!");
    assert_eq!(ev(r#"1 + 2 + "x""#), "string:3x");
}

#[test]
fn type_mismatch_names_the_operator_and_types() {
    assert_eq!(ev(r#""a" - 1"#), "error: `-` cannot take string and int");
    assert_eq!(ev("true < 1"), "error: `<` cannot take boolean and int");
    assert_eq!(ev("1 && true"), "error: `&&` cannot take int and boolean");
}

#[test]
fn tuples_and_empty() {
    assert_eq!(ev("(1, 2.5, \"x\")"), "tuple:(1, 2.5, \"x\")");
    assert_eq!(ev("()"), "empty:");
    assert_eq!(ev("(1)"), "int:1");
    assert_eq!(ev("() == ()"), "boolean:true");
    assert_eq!(ev("(1, 2) == (1, 2.0)"), "boolean:true");
}

#[test]
fn missing_values_propagate_except_through_equality() {
    let missing = [Value::Empty];
    assert_eq!(eval_with("$1 * 2", &missing), Ok("empty:".into()));
    assert_eq!(eval_with("cToF($1)", &missing), Ok("empty:".into()));
    assert_eq!(eval_with("$1 == ()", &missing), Ok("boolean:true".into()));
    assert_eq!(
        eval_with("$1 > 3 || true", &missing),
        Ok("boolean:true".into())
    );
    assert_eq!(
        eval_with("$1 > 3 && false", &missing),
        Ok("boolean:false".into())
    );
    assert_eq!(eval_with("typeof($1)", &missing), Ok("string:empty".into()));
}

#[test]
fn conditions_treat_missing_as_false() {
    let expr = Expr::compile("$1 <= 20", 1).expect("valid");
    assert_eq!(expr.eval_condition(&[Value::Empty]), Ok(false));
    assert_eq!(expr.eval_condition(&[Value::Int(3)]), Ok(true));
    let not_bool = Expr::compile("$1 + 1", 1).expect("valid");
    assert_eq!(
        not_bool.eval_condition(&[Value::Int(3)]),
        Err(EvalError::NotBoolean("int"))
    );
}

#[test]
fn if_evaluates_only_the_chosen_branch() {
    assert_eq!(ev("if(true, 1, 1 / 0)"), "int:1");
    assert_eq!(
        ev("if(1, 2, 3)"),
        "error: `if` argument 1 must be a boolean, got int"
    );
}

#[test]
fn parse_errors_report_the_column() {
    assert_eq!(
        parse_err("cToF($1"),
        "column 8: expected `,` or `)`, found end of expression"
    );
    assert_eq!(
        parse_err("($1 + 2"),
        "column 8: expected `)`, found end of expression"
    );
    assert_eq!(
        parse_err("$1 + * 2"),
        "column 6: expected a value, found `*`"
    );
    assert_eq!(
        parse_err("$1 $2"),
        "column 4: expected an operator or the end of the expression, found `$2`"
    );
    assert_eq!(
        parse_err(r#"$1 == "a"#),
        "column 7: unterminated string; close it with the quote it opened with"
    );
    assert_eq!(parse_err("$1 # 2"), "column 4: unexpected character `#`");
}

#[test]
fn compile_errors_cover_names_arity_and_inputs() {
    assert_eq!(parse_err("foo($1)"), "column 1: unknown function `foo`");
    assert_eq!(
        parse_err("1 + scale($1, 0, 1)"),
        "column 5: `scale` takes 5 arguments, got 3"
    );
    assert_eq!(
        parse_err("$1 + $3"),
        "column 6: `$3` refers to input 3 but the rule has 2 input(s)"
    );
    assert_eq!(
        parse_err("sum($1)"),
        "column 1: `sum` is not available here: aggregations exist only in window transforms of dataflow graphs"
    );
    assert_eq!(
        parse_err("cToF"),
        "column 5: expected `(` after a function name, found end of expression"
    );
}

#[test]
fn keyword_logic_operators_are_rejected_with_a_hint() {
    assert_eq!(
        parse_err(r#"$1 == "a" or $1 == "b""#),
        "column 11: `or` is not an operator; use `||`"
    );
    assert_eq!(
        parse_err("not $1"),
        "column 1: `not` is not an operator; use `!`"
    );
}

#[test]
fn nesting_and_length_are_bounded() {
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(parse_err(&deep).contains("nests too deeply"));
    let long = vec!["1"; 100_000].join("+");
    assert!(parse_err(&long).contains("too long"));
    let fine = vec!["$1"; 200].join("+");
    assert_eq!(eval_with(&fine, &[Value::Int(1)]), Ok("int:200".into()));
}

/// Every string of up to four characters from an alphabet of expression characters
/// compiles or fails with an error; none panics, and whatever compiles evaluates.
#[test]
fn short_garbage_never_panics() {
    let alphabet: Vec<char> = "$1(),\"'+-*^!<=>&|. ax_é:".chars().collect();
    let mut text = String::new();
    let mut indexes = Vec::new();
    loop {
        text.clear();
        text.extend(indexes.iter().map(|&i: &usize| alphabet[i]));
        if let Ok(expr) = Expr::compile(&text, 1) {
            let _ = expr.eval(&[Value::Int(2)]);
        }
        // Next combination, like counting in base `alphabet.len()`.
        let mut position = 0;
        loop {
            if position == indexes.len() {
                if indexes.len() == 4 {
                    return;
                }
                indexes.push(0);
                break;
            }
            indexes[position] += 1;
            if indexes[position] < alphabet.len() {
                break;
            }
            indexes[position] = 0;
            position += 1;
        }
    }
}

#[test]
fn math_functions_also_answer_to_their_bare_name() {
    assert_eq!(ev("abs(-3)"), "int:3");
    assert_eq!(ev("math::abs(-2.5)"), "float:2.5");
}
