//! The catalogue and order placement.

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{AppState, WebError};
use crate::store::{CreateOrderError, NewItem};

/// Most units of one product in one order.
pub const MAX_NUM: i64 = 99;

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
    sandbox: bool,
}

pub async fn catalogue(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let products = state
        .store
        .products()
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
    let page = ShopPage {
        products,
        sandbox: state.checkout.sandbox_base.is_some(),
    };
    Ok(html(page.render()?))
}

pub fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
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
    form: web::Form<OrderForm>,
) -> Result<HttpResponse, WebError> {
    let sku_id = form
        .sku_id
        .as_deref()
        .map(str::trim)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(WebError::NotFound("product"))?;
    let num = form
        .num
        .as_deref()
        .map(str::trim)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| (1..=MAX_NUM).contains(n))
        .ok_or_else(|| {
            WebError::BadRequest(format!("数量须为 1 到 {MAX_NUM} 的整数 Quantity must be a whole number from 1 to {MAX_NUM}."))
        })?;
    let order = state
        .orders
        .create(
            vec![NewItem {
                product_id: sku_id,
                num,
            }],
            state.checkout.order_ttl,
        )
        .await
        .map_err(|e| match e {
            CreateOrderError::UnknownProduct(_) => WebError::NotFound("product"),
            CreateOrderError::NotEnoughStock { available, .. } => WebError::Conflict(format!(
                "库存不足，仅剩 {available} 件 Not enough stock: {available} left."
            )),
            CreateOrderError::Empty | CreateOrderError::TooLarge => {
                WebError::BadRequest("This order cannot be placed.".into())
            }
            CreateOrderError::Store(e) => WebError::Store(e),
        })?;
    tracing::info!(out_trade_no = %order.out_trade_no, total_fee = order.total_fee.0, "order placed");
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/pay/{}", order.out_trade_no)))
        .finish())
}
