//! Procedural macros of Baton, used through the `baton` crate.
//!
//! `#[baton::service]` on a trait of async methods generates, from that one definition:
//! - the trait itself, with each method's future required to be `Send` (implementations still
//!   write `async fn`);
//! - `{Trait}Stub`, the typed stub workflow code calls (`ctx.service::<PaymentStub>()`), whose
//!   methods return a call that can be awaited directly or dispatched;
//! - `{Trait}Service<T>`, the dispatcher a worker hosts (`PaymentService::new(impl)`).

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Error, FnArg, GenericArgument, ItemTrait, LitStr, Pat, PathArguments, ReturnType, Token, TraitItem, Type};

/// Turns a trait of `async fn method(&self, args…) -> Result<T, E>` into a Baton service. The
/// service name defaults to the trait name; `#[baton::service(name = "payments")]` sets it.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Method {
    ident: syn::Ident,
    attrs: Vec<syn::Attribute>,
    arg_names: Vec<syn::Ident>,
    arg_types: Vec<Type>,
    ok: Type,
    err: Type,
}

fn parse_name(attr: proc_macro2::TokenStream) -> syn::Result<Option<String>> {
    if attr.is_empty() {
        return Ok(None);
    }
    let args = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    let mut name = None;
    for arg in args {
        if !arg.path.is_ident("name") {
            return Err(Error::new(arg.path.span(), "unknown argument; expected `name = \"…\"`"));
        }
        match arg.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s), ..
            }) => name = Some(s.value()),
            other => {
                return Err(Error::new(other.span(), "the service name must be a string literal"));
            }
        }
    }
    Ok(name)
}

fn result_types(ret: &ReturnType) -> syn::Result<(Type, Type)> {
    let err = || {
        Error::new(
            ret.span(),
            "a service method must return `Result<T, E>` where E implements `baton::ServiceError`",
        )
    };
    let ReturnType::Type(_, ty) = ret else {
        return Err(err());
    };
    let Type::Path(path) = ty.as_ref() else {
        return Err(err());
    };
    let last = path.path.segments.last().ok_or_else(err)?;
    if last.ident != "Result" {
        return Err(err());
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Err(err());
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(e), None) => Ok((ok, e)),
        _ => Err(err()),
    }
}

fn parse_method(item: &TraitItem) -> syn::Result<Method> {
    let TraitItem::Fn(f) = item else {
        return Err(Error::new(item.span(), "a service trait may only contain methods"));
    };
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        return Err(Error::new(sig.span(), "service methods must be `async fn`"));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(sig.generics.span(), "service methods cannot be generic"));
    }
    if f.default.is_some() {
        return Err(Error::new(f.span(), "service methods cannot have a default body"));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => return Err(Error::new(sig.span(), "service methods take `&self` first")),
    }
    let mut arg_names = Vec::new();
    let mut arg_types = Vec::new();
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            return Err(Error::new(input.span(), "unexpected receiver"));
        };
        let Pat::Ident(ident) = pt.pat.as_ref() else {
            return Err(Error::new(
                pt.pat.span(),
                "service method arguments must be plain names",
            ));
        };
        arg_names.push(ident.ident.clone());
        arg_types.push((*pt.ty).clone());
    }
    let (ok, err) = result_types(&sig.output)?;
    Ok(Method {
        ident: sig.ident.clone(),
        attrs: f.attrs.clone(),
        arg_names,
        arg_types,
        ok,
        err,
    })
}

fn expand(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let name = parse_name(attr)?;
    let item: ItemTrait = syn::parse2(item)?;
    if !item.generics.params.is_empty() {
        return Err(Error::new(item.generics.span(), "service traits cannot be generic"));
    }
    let vis = &item.vis;
    let trait_ident = &item.ident;
    let trait_attrs = &item.attrs;
    let service_name = LitStr::new(&name.unwrap_or_else(|| trait_ident.to_string()), Span::call_site());
    let stub = format_ident!("{}Stub", trait_ident);
    let handler = format_ident!("{}Service", trait_ident);
    let methods = item.items.iter().map(parse_method).collect::<syn::Result<Vec<_>>>()?;

    let trait_methods = methods.iter().map(|m| {
        let Method { ident, attrs, arg_names, arg_types, ok, err } = m;
        quote! {
            #(#attrs)*
            fn #ident(&self, #(#arg_names: #arg_types),*) -> impl ::core::future::Future<Output = ::core::result::Result<#ok, #err>> + ::core::marker::Send;
        }
    });
    let stub_methods = methods.iter().map(|m| {
        let Method {
            ident,
            attrs,
            arg_names,
            arg_types,
            ok,
            err,
        } = m;
        let method_name = LitStr::new(&ident.to_string(), ident.span());
        quote! {
            #(#attrs)*
            pub fn #ident(&self, #(#arg_names: #arg_types),*) -> ::baton::ServiceCall<#ok, #err> {
                self.ctx.call_service(#service_name, #method_name, ::baton::Payload::json(&(#(#arg_names,)*)))
            }
        }
    });
    let method_names: Vec<LitStr> = methods
        .iter()
        .map(|m| LitStr::new(&m.ident.to_string(), m.ident.span()))
        .collect();
    let dispatch_arms = methods.iter().zip(&method_names).map(|(m, method_name)| {
        let Method { ident, arg_names, arg_types, .. } = m;
        quote! {
            #method_name => ::std::boxed::Box::pin(async move {
                let (#(#arg_names,)*): (#(#arg_types,)*) = ::baton::__private::decode_arguments(#service_name, #method_name, &args)?;
                ::baton::__private::encode_outcome(inner.#ident(#(#arg_names),*).await)
            }),
        }
    });

    let stub_doc = format!(
        "Typed stub for calling the `{}` service from workflow code.",
        service_name.value()
    );
    let handler_doc = format!("Hosts an implementation of [`{trait_ident}`] on a worker.");
    Ok(quote! {
        #(#trait_attrs)*
        #vis trait #trait_ident: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#trait_methods)*
        }

        #[doc = #stub_doc]
        #[derive(Clone)]
        #vis struct #stub {
            ctx: ::baton::WorkflowContext,
        }

        impl ::baton::ServiceStub for #stub {
            const SERVICE: &'static str = #service_name;
            fn from_context(ctx: &::baton::WorkflowContext) -> Self {
                Self { ctx: ctx.clone() }
            }
        }

        impl #stub {
            #(#stub_methods)*
        }

        #[doc = #handler_doc]
        #vis struct #handler<T>(::std::sync::Arc<T>);

        impl<T: #trait_ident> #handler<T> {
            /// Wraps an implementation.
            pub fn new(implementation: T) -> Self {
                Self(::std::sync::Arc::new(implementation))
            }

            /// Wraps a shared implementation.
            pub fn from_arc(implementation: ::std::sync::Arc<T>) -> Self {
                Self(implementation)
            }
        }

        impl<T: #trait_ident> ::baton::ServiceHandler for #handler<T> {
            fn name(&self) -> &'static str {
                #service_name
            }

            fn methods(&self) -> &'static [&'static str] {
                &[#(#method_names),*]
            }

            fn call(&self, method: &str, args: ::baton::Payload) -> ::baton::__private::TaskFuture {
                let inner = ::std::sync::Arc::clone(&self.0);
                match method {
                    #(#dispatch_arms)*
                    other => {
                        let failure = ::baton::__private::unknown_method(#service_name, other);
                        ::std::boxed::Box::pin(async move { ::core::result::Result::Err(failure) })
                    }
                }
            }
        }
    })
}
