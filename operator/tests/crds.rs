//! `crds/` must hold exactly what `crdgen` prints: regenerate with `just crds`.

#[test]
fn crds_directory_matches_crdgen() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/emco-crds.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/emco-crds.yaml exists");
    assert!(
        committed == emco::api::crds_yaml(),
        "crds/emco-crds.yaml differs from what crdgen prints: run `just crds` and commit the result"
    );
}

#[test]
fn every_crd_is_in_the_emco_category_with_printer_columns() {
    for crd in emco::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let categories = crd.spec.names.categories.clone().unwrap_or_default();
        assert!(categories.contains(&"emco".to_string()), "{name} is not in category emco");
        let columns = crd.spec.versions[0].additional_printer_columns.clone().unwrap_or_default();
        assert!(!columns.is_empty(), "{name} has no printer columns");
    }
}

#[test]
fn the_operator_chart_ships_the_same_crds() {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/emco-operator/crds/emco-crds.yaml");
    let shipped = std::fs::read_to_string(chart).expect("the chart has crds/emco-crds.yaml");
    assert!(shipped == emco::api::crds_yaml(), "charts/emco-operator/crds differs from crdgen: run `just crds`");
}
