//! Prints every CRD of the operator as one multi-document YAML stream (the content of `crds/`).

fn main() {
    print!("{}", emco::api::crds_yaml());
}
