//! Host bindings of the Stratus interfaces, generated from `wit/stratus.wit`.

wasmtime::component::bindgen!({
    path: "../wit/stratus.wit",
    world: "stratus-imports",
    imports: {
        // Minting can fail only inside the host; the guest's call traps then.
        "stratus:function/credentials.token": async | trappable,
        "stratus:function/credentials.token-for": async | trappable,
        default: async,
    },
});
