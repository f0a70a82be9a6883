//! The `#[stratus_sdk::handler]` attribute.
//!
//! It turns a plain `fn(Request) -> Response` into the `wasi:http/incoming-handler`
//! export of a component. The glue lives in a hidden module so the author's
//! namespace stays theirs.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, parse_macro_input};

/// Marks the function that serves every request of this component.
///
/// The function must be `fn(stratus_sdk::Request) -> stratus_sdk::Response`:
/// synchronous, not generic, one argument. Anything else is a compile error
/// pointing at the offending part of the signature.
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
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a Stratus handler returns `stratus_sdk::Response`",
        ));
    }

    let name = &sig.ident;
    let module = format_ident!("__stratus_handler_{}", name);
    // The coercion below makes rustc check argument and return types, and
    // reports a mismatch at the signature the author wrote.
    let checked = format_ident!("__STRATUS_HANDLER_{}", name);
    let check = quote_spanned! {sig.span()=>
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #checked: fn(::stratus_sdk::Request) -> ::stratus_sdk::Response = #name;
    };
    Ok(quote! {
        #func
        #check

        #[doc(hidden)]
        mod #module {
            struct Export;

            impl ::stratus_sdk::__private::wasip2::exports::http::incoming_handler::Guest for Export {
                fn handle(
                    request: ::stratus_sdk::__private::wasip2::http::types::IncomingRequest,
                    response_out: ::stratus_sdk::__private::wasip2::http::types::ResponseOutparam,
                ) {
                    ::stratus_sdk::__private::serve(request, response_out, super::#checked)
                }
            }

            ::stratus_sdk::__private::wasip2::http::proxy::export!(
                Export with_types_in ::stratus_sdk::__private::wasip2
            );
        }
    })
}
