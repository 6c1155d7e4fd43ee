//! The catalogue and order placement.

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{AppState, Chrome, WebError};
use crate::checkout::{CheckoutError, Missing, NewItem, MAX_NUM};

struct ProductView {
    id: i64,
    name: String,
    price: String,
    stock: i64,
    max_num: i64,
}

#[derive(Template)]
#[template(path = "shop.html")]
struct ShopPage {
    products: Vec<ProductView>,
    chrome: Chrome,
}

pub async fn catalogue(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let products = state
        .checkout
        .catalogue()
        .await?
        .into_iter()
        .map(|p| ProductView {
            id: p.id,
            name: p.name,
            price: p.price.to_string(),
            stock: p.stock,
            max_num: p.stock.clamp(1, MAX_NUM),
        })
        .collect();
    render(&ShopPage {
        products,
        chrome: state.chrome(),
    })
}

/// A rendered page, 200.
pub fn render(page: &impl Template) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// The buy form. Both fields arrive as text so that a malformed value gets a clear page rather
/// than the framework's generic error. No amount is ever read from the browser.
#[derive(Debug, Deserialize)]
pub struct OrderForm {
    sku_id: Option<String>,
    num: Option<String>,
}

/// Creates the order, reserving stock, and sends the shopper to its pay page.
pub async fn place_order(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    form: web::Form<OrderForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let number = |field: &Option<String>| field.as_deref().and_then(|s| s.trim().parse().ok());
    let product_id = number(&form.sku_id).ok_or(CheckoutError::NotFound(Missing::Product))?;
    // Not a number: a quantity the checkout refuses.
    let num = number(&form.num).unwrap_or(0);
    let order = state
        .checkout
        .place_order(vec![NewItem { product_id, num }], &state.shopper(&req))
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/pay/{}", order.out_trade_no)))
        .finish())
}
