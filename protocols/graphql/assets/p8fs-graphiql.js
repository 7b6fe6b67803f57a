// Starts GraphiQL on p8fs's GraphQL page. Loaded after React, ReactDOM and GraphiQL (the page's
// Content-Security-Policy allows no inline script, so this lives in its own file).
//
// The endpoint comes from the `data-endpoint` attribute of `#graphiql`, resolved against the
// page's address; subscriptions use the same path over ws: or wss:, whichever matches the page.
// The headers editor starts with an Authorization template and is never saved to localStorage,
// so a pasted token lives only as long as the tab. GraphiQL sends the editor's headers with
// every HTTP request and as the `connection_init` payload of a subscription's WebSocket.
(function () {
  'use strict';

  var root = document.getElementById('graphiql');
  if (!root) {
    return;
  }
  var url = new URL(root.getAttribute('data-endpoint') || '/graphql', window.location.href);
  var subscriptionUrl = new URL(url.href);
  subscriptionUrl.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';

  var fetcher = window.GraphiQL.createFetcher({
    url: url.href,
    subscriptionUrl: subscriptionUrl.href,
  });

  var defaultHeaders = '{"Authorization": "Bearer <paste a token from p8fs login>"}';

  window.ReactDOM.createRoot(root).render(
    window.React.createElement(window.GraphiQL, {
      fetcher: fetcher,
      defaultHeaders: defaultHeaders,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: 'headers',
    })
  );
})();
