//! The `#[stratus_sdk::handler]` attribute.
//!
//! It turns a plain `fn(Request) -> Response` into the `wasi:http/incoming-handler`
//! export of a component. The glue lives in a hidden module so the author's
//! namespace stays theirs.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, parse_macro_input};

/// Marks the function that serves every request of this component.
///
/// The function takes one `stratus_sdk::Request` and returns anything that
/// is `stratus_sdk::IntoResponse`: a `Response`, or `Result<T, E>` with both
/// sides such (so `?` works). It is synchronous and not generic; anything
/// else is a compile error pointing at the offending part of the signature.
/// A crate has one handler: route inside it with `stratus_sdk::Router`.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new(attr.span(), "#[stratus_sdk::handler] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand(&func) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

fn expand(func: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let sig = &func.sig;
    if let Some(asyncness) = sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "a Stratus handler is a plain synchronous function: remove `async`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a Stratus handler cannot be generic",
        ));
    }
    if sig.inputs.len() != 1 {
        return Err(syn::Error::new(
            sig.inputs.span().join(sig.ident.span()).unwrap_or(sig.ident.span()),
            "a Stratus handler takes exactly one argument: `req: stratus_sdk::Request`",
        ));
    }
    if let Some(FnArg::Receiver(recv)) = sig.inputs.first() {
        return Err(syn::Error::new(
            recv.span(),
            "a Stratus handler is a free function, not a method",
        ));
    }
    if let Some(FnArg::Typed(arg)) = sig.inputs.first()
        && let syn::Type::Reference(reference) = &*arg.ty
    {
        return Err(syn::Error::new(
            reference.span(),
            "a Stratus handler takes the request by value: `req: stratus_sdk::Request`",
        ));
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a Stratus handler returns `stratus_sdk::Response` (or `Result<T, E>` of responses)",
        ));
    }

    let name = &sig.ident;
    // The call below makes rustc check the argument and return types, and
    // report a mismatch at the signature the author wrote.
    let entry = quote_spanned! {sig.span()=>
        fn __stratus_entry(req: ::stratus_sdk::Request) -> ::stratus_sdk::Response {
            ::stratus_sdk::IntoResponse::into_response(#name(req))
        }
    };
    // A component has one `wasi:http/incoming-handler` export. A second
    // handler in the crate defines this exported name again, which rustc
    // reports at both handlers' names before anything else.
    let marker = quote_spanned! {name.span()=>
        #[doc(hidden)]
        #[macro_export]
        macro_rules! only_one_stratus_handler_per_crate { () => {} }
    };
    Ok(quote! {
        #func
        #marker

        #[doc(hidden)]
        const _: () = {
            #entry

            // Only a component built for wasm32 exports the handler; built
            // natively (unit tests) the crate is plain Rust.
            #[cfg(target_arch = "wasm32")]
            struct Export;

            #[cfg(target_arch = "wasm32")]
            impl ::stratus_sdk::__private::wasip2::exports::http::incoming_handler::Guest for Export {
                fn handle(
                    request: ::stratus_sdk::__private::wasip2::http::types::IncomingRequest,
                    response_out: ::stratus_sdk::__private::wasip2::http::types::ResponseOutparam,
                ) {
                    ::stratus_sdk::__private::serve(request, response_out, __stratus_entry)
                }
            }

            #[cfg(target_arch = "wasm32")]
            ::stratus_sdk::__private::wasip2::http::proxy::export!(
                Export with_types_in ::stratus_sdk::__private::wasip2
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = __stratus_entry;
        };
    })
}
